"""The splitter cuts where psql would, on the quoting forms that fool naive splitting."""

from __future__ import annotations

import pytest

from dbtool.sqlsplit import SplitError, line_and_column, split, transaction_control


def pieces(text: str) -> list[str]:
    return [text[s.start : s.end].strip() for s in split(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("select 1; select 2", ["select 1;", "select 2"]),
        ("select ';' ; select 'it''s;'", ["select ';' ;", "select 'it''s;'"]),
        (r"select E'\';' ; select 2;", [r"select E'\';' ;", "select 2;"]),
        ("select e'a\\\\'; select 3;", ["select e'a\\\\';", "select 3;"]),
        ('select "a;""b"; x;', ['select "a;""b";', "x;"]),
        ("select $$a;b$$; select $f$ $$ ; $f$;", ["select $$a;b$$;", "select $f$ $$ ; $f$;"]),
        ("select a$b; select $1;", ["select a$b;", "select $1;"]),
        ("/* a /* ; */ ; */ select 1;", ["/* a /* ; */ ; */ select 1;"]),
        ("-- c;\n;;  \n-- only comments", []),
        ("select 1; -- trailing; comment", ["select 1;"]),
        (
            "create rule r as on insert to t do (insert into a values(1); insert into b values(2));",
            ["create rule r as on insert to t do (insert into a values(1); insert into b values(2));"],
        ),
        ("select 'unterminated;", ["select 'unterminated;"]),
        ("select 1;\r\nselect 2;\r\n", ["select 1;", "select 2;"]),
        ("select 'é;'; select 2;", ["select 'é;';", "select 2;"]),
    ],
)
def test_split(text, expected):
    assert pieces(text) == expected


def test_meta_command_is_reported_at_its_offset():
    text = "select 1;\n  \\connect other\n"
    with pytest.raises(SplitError) as caught:
        split(text)
    assert str(caught.value) == "psql meta-command \\connect is not supported"
    assert line_and_column(text, caught.value.offset) == (2, 3)


def test_backslash_inside_strings_is_not_a_meta_command():
    assert pieces("select '\\x'; select $$\\d$$;") == ["select '\\x';", "select $$\\d$$;"]


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("begin;", "BEGIN"),
        ("-- x\n/* y */ COMMIT;", "COMMIT"),
        ("start transaction;", "START TRANSACTION"),
        ("select 1;", None),
        ("beginning_table;", None),
    ],
)
def test_transaction_control(text, keyword):
    assert transaction_control(text, split(text)[0]) == keyword
