-- purpose: what in a table makes INSERT rows travel differently from how they were written (a trigger other than BEFORE ROW, an INSERT rule, a default calling a volatile function that may read tables), each named or NULL; and whether the session may create the temporary functions that name a failing row (TEMP, PL/pgSQL)
SELECT
    (SELECT format('trigger %%I', t.tgname) FROM pg_trigger AS t
     WHERE t.tgrelid = to_regclass(%(table)s) AND NOT t.tgisinternal AND t.tgtype & 4 <> 0
       AND NOT (t.tgtype & 1 <> 0 AND t.tgtype & 2 <> 0)
     ORDER BY t.tgname LIMIT 1) AS trigger,
    (SELECT format('rule %%I', r.rulename) FROM pg_rewrite AS r
     WHERE r.ev_class = to_regclass(%(table)s) AND r.ev_type = '3'
     ORDER BY r.rulename LIMIT 1) AS rule,
    (SELECT format('the default of column %%I (%%s)', a.attname, p.oid::regproc) FROM pg_attrdef AS d
     JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
     JOIN pg_depend AS dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
          AND dep.refclassid = 'pg_proc'::regclass
     JOIN pg_proc AS p ON p.oid = dep.refobjid
     WHERE d.adrelid = to_regclass(%(table)s) AND p.provolatile = 'v'
       AND p.proname NOT IN ('nextval', 'gen_random_uuid', 'uuid_generate_v1', 'uuid_generate_v1mc',
                             'uuid_generate_v4', 'random', 'clock_timestamp', 'timeofday')
     ORDER BY a.attnum LIMIT 1) AS volatile_default,
    has_database_privilege(current_database(), 'TEMP')
        AND EXISTS (SELECT FROM pg_language WHERE lanname = 'plpgsql') AS helpers_possible
