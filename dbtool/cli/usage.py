"""What the user typed, read forgivingly: global options after the command, and suggestions for a typo."""

from __future__ import annotations

# Options of the group that the bin/ scripts pass after the command: moved in front of it.
GLOBAL_FLAGS = ("--debug",)
GLOBAL_VALUED = ("--connect-timeout",)


def hoist_global_options(argv: list[str]) -> list[str]:
    """``setup --debug`` as ``--debug setup`` (what ``bin/db-setup --debug`` runs); nothing after ``--`` moves."""
    front: list[str] = []
    rest: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            rest += [word, *words]
            break
        if not rest:  # before the command: click reads these already
            if word in GLOBAL_VALUED:
                front += [word, *[next(words, "")]]
            else:
                (front if word.startswith("-") else rest).append(word)
            continue
        if word in GLOBAL_FLAGS or word.startswith(tuple(f"{name}=" for name in GLOBAL_VALUED)):
            front.append(word)
        elif word in GLOBAL_VALUED:
            front += [word, *[next(words, "")]]
        else:
            rest.append(word)
    return front + rest


def unknown_target(word: str, known: list[str]) -> str:
    """``unknown target 'prdo' (did you mean 'prod'? known: local, prod)``."""
    return f"unknown target {word!r} ({did_you_mean(word, known)}known: {', '.join(known)})"


def did_you_mean(word: str, choices: list[str]) -> str:
    """``did you mean 'x'? `` for the closest of ``choices``, or nothing."""
    import difflib

    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {found[0]!r}? " if found else ""
