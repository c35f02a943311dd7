-- purpose: rows sent through the Data API as one INSERT (COPY data as JSON rows for an INSERT … SELECT, or the SQL rows of INSERTs sent together); when it fails, the row (and, for COPY, the column) that fails alone, returned without failing the transaction (the API ends a transaction at its first error)
CREATE OR REPLACE FUNCTION pg_temp.dbtool_rows(statement text, rows json, rows_are_sql boolean, probes json)
RETURNS text LANGUAGE plpgsql AS $dbtool$
DECLARE
    state text;
    message text;
    detail text;
    hint text;
    probe_state text;
    found integer;
    matched integer;
    number integer := 0;
    column_number integer;
    one json;
    probe text;
BEGIN
    BEGIN
        IF rows_are_sql THEN  -- statement is "INSERT INTO t (…) VALUES", rows its rows' SQL
            EXECUTE statement || ' ' || (SELECT pg_catalog.string_agg(value, ', ' ORDER BY n)
                                         FROM pg_catalog.json_array_elements_text(rows) WITH ORDINALITY AS r(value, n));
        ELSE  -- statement reads the rows from $1
            EXECUTE statement USING rows;
        END IF;
        RETURN NULL;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    END;
    BEGIN
        -- In order, so a row that clashes with an earlier one sent with it is the one named.
        FOR one IN SELECT value FROM pg_catalog.json_array_elements(rows) LOOP
            number := number + 1;
            BEGIN
                IF rows_are_sql THEN
                    EXECUTE statement || ' ' || (one #>> '{}');
                ELSE
                    EXECUTE statement USING pg_catalog.json_build_array(one);
                END IF;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                    detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
                found := number;
                column_number := 0;
                IF left(state, 2) = '22' THEN  -- a value refused: which column's, as COPY names it
                    FOR probe IN SELECT value FROM pg_catalog.json_array_elements_text(probes) LOOP
                        column_number := column_number + 1;
                        BEGIN
                            EXECUTE probe USING one;
                        EXCEPTION WHEN OTHERS THEN
                            GET STACKED DIAGNOSTICS probe_state = RETURNED_SQLSTATE;
                            IF probe_state = state THEN
                                matched := column_number;
                                EXIT;
                            END IF;
                        END;
                    END LOOP;
                END IF;
                EXIT;
            END;
        END LOOP;
        RAISE SQLSTATE 'DBTRB';  -- undo the rows replayed one by one
    EXCEPTION WHEN SQLSTATE 'DBTRB' THEN
        NULL;
    END;
    RETURN pg_catalog.json_build_object(
        'row', found, 'column', matched, 'sqlstate', state, 'message', message,
        'detail', nullif(detail, ''), 'hint', nullif(hint, ''))::text;
END
$dbtool$
