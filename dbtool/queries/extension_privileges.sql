-- purpose: who this role is for CREATE EXTENSION: a superuser, a member of RDS's rds_superuser, and RDS's allow-list (NULL off RDS)
SELECT current_user::text,
       r.rolsuper,
       CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'rds_superuser')
            THEN pg_catalog.pg_has_role(current_user, 'rds_superuser', 'MEMBER') ELSE false END AS rds_superuser,
       current_setting('rds.allowed_extensions', true) AS allowed
FROM pg_catalog.pg_roles AS r
WHERE r.rolname = current_user
