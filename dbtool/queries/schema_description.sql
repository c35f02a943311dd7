-- purpose: drift: the database's schema as (kind, name, DDL-like text) from the catalog, on any transport (no pg_dump); extension members, system schemas and the migrations table left out
WITH
  own_namespace AS (
    SELECT n.oid, n.nspname
    FROM pg_catalog.pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.objid = n.oid AND d.deptype = 'e')
  ),
  member AS (  -- objects an extension created: its business, not the schema's
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'
  ),
  own_class AS (
    SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relispartition, c.relpartbound, n.nspname,
           pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS qualified
    FROM pg_catalog.pg_class c
    JOIN own_namespace n ON n.oid = c.relnamespace
    WHERE NOT EXISTS (SELECT 1 FROM member m WHERE m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND m.objid = c.oid)
      AND NOT (c.relname = 'schema_migrations' AND c.relkind IN ('r', 'p'))
  )
SELECT kind, name, ddl FROM (
  SELECT 1 AS kind, n.nspname AS name, 'CREATE SCHEMA ' || pg_catalog.quote_ident(n.nspname) || ';' AS ddl
  FROM own_namespace n WHERE n.nspname <> 'public'
  UNION ALL
  SELECT 2, e.extname, 'CREATE EXTENSION ' || pg_catalog.quote_ident(e.extname) || ' WITH SCHEMA '
         || pg_catalog.quote_ident(n.nspname) || ';'
  FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
  WHERE e.extname <> 'plpgsql'
  UNION ALL
  SELECT 3, t.typname, 'CREATE TYPE ' || pg_catalog.format_type(t.oid, NULL) || ' AS ENUM ('
         || (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
             FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid) || ');'
  FROM pg_catalog.pg_type t JOIN own_namespace n ON n.oid = t.typnamespace
  WHERE t.typtype = 'e'
    AND NOT EXISTS (SELECT 1 FROM member m WHERE m.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND m.objid = t.oid)
  UNION ALL
  SELECT 3, t.typname, 'CREATE DOMAIN ' || pg_catalog.format_type(t.oid, NULL) || ' AS '
         || pg_catalog.format_type(t.typbasetype, t.typtypmod)
         || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
         || COALESCE(' DEFAULT ' || t.typdefault, '')
         || COALESCE((SELECT pg_catalog.string_agg(' CONSTRAINT ' || pg_catalog.quote_ident(k.conname) || ' '
                                                   || pg_catalog.pg_get_constraintdef(k.oid), '' ORDER BY k.conname)
                      FROM pg_catalog.pg_constraint k WHERE k.contypid = t.oid), '') || ';'
  FROM pg_catalog.pg_type t JOIN own_namespace n ON n.oid = t.typnamespace
  WHERE t.typtype = 'd'
    AND NOT EXISTS (SELECT 1 FROM member m WHERE m.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND m.objid = t.oid)
  UNION ALL
  SELECT 3, c.relname, 'CREATE TYPE ' || c.qualified || ' AS ('
         || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' '
                                          || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) || ');'
  FROM own_class c WHERE c.relkind = 'c'
  UNION ALL
  SELECT 4, c.qualified, 'CREATE SEQUENCE ' || c.qualified || ' AS ' || pg_catalog.format_type(s.seqtypid, NULL)
         || ' INCREMENT BY ' || s.seqincrement || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax
         || ' START WITH ' || s.seqstart || ' CACHE ' || s.seqcache || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END || ';'
  FROM own_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
  WHERE c.relkind = 'S'
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d  -- an identity column's: part of its table
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'i')
  UNION ALL
  SELECT 5, c.qualified,
         'CREATE ' || CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END || 'TABLE ' || c.qualified || ' ('
         || COALESCE(E'\n' || (
              SELECT pg_catalog.string_agg('    ' || pg_catalog.quote_ident(a.attname) || ' '
                       || pg_catalog.format_type(a.atttypid, a.atttypmod)
                       || CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0
                               THEN ' COLLATE ' || (SELECT pg_catalog.quote_ident(co.collname)
                                                    FROM pg_catalog.pg_collation co WHERE co.oid = a.attcollation)
                               ELSE '' END
                       || CASE WHEN a.attidentity = 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                               WHEN a.attidentity = 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
                       || CASE WHEN a.attgenerated = 's'
                               THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                               WHEN ad.adbin IS NOT NULL
                               THEN ' DEFAULT ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END
                       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                       E'\n' ORDER BY a.attname)
              FROM pg_catalog.pg_attribute a
              JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
              LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
         || E'\n)'
         || CASE WHEN c.relispartition
                 THEN ' PARTITION OF ' || (SELECT ih.inhparent::pg_catalog.regclass::text FROM pg_catalog.pg_inherits ih
                                           WHERE ih.inhrelid = c.oid)
                      || ' ' || pg_catalog.pg_get_expr(c.relpartbound, c.oid) ELSE '' END
         || COALESCE(' PARTITION BY ' || pg_catalog.pg_get_partkeydef(c.oid), '') || ';'
         || CASE WHEN c.relrowsecurity THEN E'\nALTER TABLE ' || c.qualified || ' ENABLE ROW LEVEL SECURITY;' ELSE '' END
  FROM own_class c WHERE c.relkind IN ('r', 'p')
  UNION ALL
  SELECT 6, c.qualified || ' ' || k.conname,
         'ALTER TABLE ONLY ' || c.qualified || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(k.conname) || ' '
         || pg_catalog.pg_get_constraintdef(k.oid) || ';'
  FROM pg_catalog.pg_constraint k JOIN own_class c ON c.oid = k.conrelid
  WHERE k.conislocal
  UNION ALL
  SELECT 7, ic.qualified, pg_catalog.pg_get_indexdef(i.indexrelid) || ';'
  FROM pg_catalog.pg_index i
  JOIN own_class ic ON ic.oid = i.indexrelid
  JOIN own_class c ON c.oid = i.indrelid
  WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                      AND k.contype IN ('p', 'u', 'x'))
  UNION ALL
  SELECT 8, c.qualified, 'CREATE ' || CASE WHEN c.relkind = 'm' THEN 'MATERIALIZED ' ELSE '' END || 'VIEW '
         || c.qualified || E' AS\n' || pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';') || ';'
  FROM own_class c WHERE c.relkind IN ('v', 'm')
  UNION ALL
  SELECT 9, p.oid::pg_catalog.regprocedure::text, pg_catalog.rtrim(pg_catalog.pg_get_functiondef(p.oid), E'\n') || ';'
  FROM pg_catalog.pg_proc p JOIN own_namespace n ON n.oid = p.pronamespace
  WHERE p.prokind IN ('f', 'p')
    AND NOT EXISTS (SELECT 1 FROM member m WHERE m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND m.objid = p.oid)
  UNION ALL
  SELECT 10, c.qualified || ' ' || tg.tgname, pg_catalog.pg_get_triggerdef(tg.oid) || ';'
  FROM pg_catalog.pg_trigger tg JOIN own_class c ON c.oid = tg.tgrelid
  WHERE NOT tg.tgisinternal
  UNION ALL
  SELECT 11, c.qualified || ' ' || r.rulename, pg_catalog.pg_get_ruledef(r.oid)
  FROM pg_catalog.pg_rewrite r JOIN own_class c ON c.oid = r.ev_class
  WHERE r.rulename <> '_RETURN'
  UNION ALL
  SELECT 12, c.qualified || ' ' || po.polname,
         'CREATE POLICY ' || pg_catalog.quote_ident(po.polname) || ' ON ' || c.qualified
         || CASE WHEN NOT po.polpermissive THEN ' AS RESTRICTIVE' ELSE '' END
         || ' FOR ' || CASE po.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                      WHEN 'd' THEN 'DELETE' ELSE 'ALL' END
         || COALESCE(' USING (' || pg_catalog.pg_get_expr(po.polqual, po.polrelid) || ')', '')
         || COALESCE(' WITH CHECK (' || pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid) || ')', '') || ';'
  FROM pg_catalog.pg_policy po JOIN own_class c ON c.oid = po.polrelid
) described
ORDER BY kind, name, ddl
