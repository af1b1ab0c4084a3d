"""JSON Merge Patch (RFC 7396)."""

MAX_PATCH_DEPTH = 64  # deeper patches are refused before the recursive merge could overflow the stack


def merge_patch(target: object, patch: object) -> object:
    """The RFC 7396 MergePatch(target, patch): objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result: dict[str, object] = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def depth(document: object) -> int:
    """How deeply objects and arrays nest (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(document, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
            deepest = max(deepest, level + 1)
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
            deepest = max(deepest, level + 1)
    return deepest
