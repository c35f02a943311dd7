-- purpose: INSERT rows of constants sent through the Data API as one INSERT (its SQL a parameter, so over the 65,536 characters a statement may have); when it fails, the first row that fails alone, returned without failing the transaction (the API ends a transaction at its first error)
CREATE OR REPLACE FUNCTION pg_temp.dbtool_insert_rows(head text, rows json) RETURNS text
LANGUAGE plpgsql AS $dbtool$
DECLARE
    state text;
    message text;
    detail text;
    hint text;
    found integer;
    number integer := 0;
    one text;
BEGIN
    BEGIN
        EXECUTE head || ' ' || (SELECT pg_catalog.string_agg(value, ', ' ORDER BY n)
                                FROM pg_catalog.json_array_elements_text(rows) WITH ORDINALITY AS r(value, n));
        RETURN NULL;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    END;
    BEGIN
        -- In order, so a row that clashes with an earlier one of the same group is the one named.
        FOR one IN SELECT value FROM pg_catalog.json_array_elements_text(rows) LOOP
            number := number + 1;
            BEGIN
                EXECUTE head || ' ' || one;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                    detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
                found := number;
                EXIT;
            END;
        END LOOP;
        RAISE SQLSTATE 'DBTRB';  -- undo the rows replayed one by one
    EXCEPTION WHEN SQLSTATE 'DBTRB' THEN
        NULL;
    END;
    RETURN pg_catalog.json_build_object(
        'row', found, 'sqlstate', state, 'message', message,
        'detail', nullif(detail, ''), 'hint', nullif(hint, ''))::text;
END
$dbtool$
