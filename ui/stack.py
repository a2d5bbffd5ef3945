"""The network builders' buttons (pooling page, training page): one edit of the stack in the URL state."""

from __future__ import annotations

from collections.abc import Callable

from cnnviz.network import StackError, format_stack, parse_stack

from .state import UrlState


def edit_stack(state: UrlState, edit: Callable, *args, param: str = "net") -> bool:
    """Apply one of cnnviz.network's edits (add_conv_block, with_head, ...) to the stack text in
    state[param]; False, and nothing changed, when the text does not parse: the error is on the
    page already and the text stays in its box for the student to fix."""
    try:
        specs = parse_stack(state[param])
    except StackError:
        return False
    state[param] = format_stack(edit(specs, *args))
    return True
