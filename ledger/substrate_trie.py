"""Substrate's ordered trie root (the header's extrinsicsRoot), so a block's extrinsics can be checked
against its header without a node.

No maintained Python library computes it, so this is the `trie_root_no_extension` algorithm of
Parity's trie-root crate with sp-trie's node codec, for keys that are SCALE-compact indices and the
Blake2-256 hasher. State version 0 (LayoutV0) stores every value inline; version 1 replaces values of
33 bytes or more by their hash.
"""

from __future__ import annotations

from citygrid.hashing import blake2_256

EMPTY_TRIE = 0x00
LEAF = (0b01 << 6, 2)
BRANCH_NO_VALUE = (0b10 << 6, 2)
BRANCH_WITH_VALUE = (0b11 << 6, 2)
HASHED_VALUE_LEAF = (0b001 << 5, 3)
HASHED_VALUE_BRANCH = (0b0001 << 4, 4)
NIBBLE_SIZE_BOUND = 65535
V1_INLINE_LIMIT = 33  # sp-trie's TRIE_VALUE_NODE_THRESHOLD


def compact(n: int) -> bytes:
    """SCALE compact encoding of a non-negative integer."""
    if n < 0:
        raise ValueError("compact integers are unsigned")
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 0b01).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 0b10).to_bytes(4, "little")
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 0b11]) + raw


def read_compact(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the SCALE compact integer at `pos`."""
    if pos >= len(data):
        raise ValueError("truncated compact integer")
    mode = data[pos] & 0b11
    if mode == 0:
        return data[pos] >> 2, pos + 1
    if mode in (1, 2):
        size = 2 if mode == 1 else 4
        if pos + size > len(data):
            raise ValueError("truncated compact integer")
        return int.from_bytes(data[pos:pos + size], "little") >> 2, pos + size
    size = (data[pos] >> 2) + 4
    if pos + 1 + size > len(data):
        raise ValueError("truncated compact integer")
    return int.from_bytes(data[pos + 1:pos + 1 + size], "little"), pos + 1 + size


def _header(kind: tuple[int, int], nibble_count: int) -> bytes:
    # sp-trie's size_and_prefix_iterator: the size shares the first byte with the node kind's prefix.
    prefix, prefix_bits = kind
    size = min(nibble_count, NIBBLE_SIZE_BOUND)
    max_value = 255 >> prefix_bits
    first = min(max_value - 1, size)
    if size == first:
        return bytes([prefix + first])
    out, rem = [prefix + max_value], size - first
    while rem > 0:
        if rem < 256:
            out.append(rem - 1)
            rem = 0
        else:
            out.append(255)
            rem -= 255
    return bytes(out)


def _partial(nibbles: list[int], kind: tuple[int, int]) -> bytes:
    # An odd nibble count puts the lone first nibble in a byte of its own.
    out = bytearray(_header(kind, len(nibbles)))
    start = len(nibbles) % 2
    if start:
        out.append(nibbles[0])
    out.extend((nibbles[i] << 4) | nibbles[i + 1] for i in range(start, len(nibbles), 2))
    return bytes(out)


def _value(value: bytes, inline_limit: int | None) -> tuple[bool, bytes]:
    if inline_limit is not None and len(value) >= inline_limit:
        return True, blake2_256(value)
    return False, compact(len(value)) + value


def _child(encoded: bytes) -> bytes:
    # Children shorter than a hash are inlined in their parent.
    data = blake2_256(encoded) if len(encoded) >= 32 else encoded
    return compact(len(data)) + data


def _node(items: list[tuple[list[int], bytes]], cursor: int, inline_limit: int | None) -> bytes:
    if not items:
        return bytes([EMPTY_TRIE])
    if len(items) == 1:
        key, value = items[0]
        hashed, v = _value(value, inline_limit)
        return _partial(key[cursor:], HASHED_VALUE_LEAF if hashed else LEAF) + v
    key, value = items[0]
    shared = len(key)
    for other, _ in items[1:]:
        n = 0
        while n < min(shared, len(other)) and key[n] == other[n]:
            n += 1
        shared = n
    partial = key[cursor:shared] if shared > cursor else []
    cursor = max(cursor, shared)
    has_value = cursor == len(key)
    rest = items[1:] if has_value else items
    children: list[list[tuple[list[int], bytes]]] = [[] for _ in range(16)]
    for k, v in rest:
        children[k[cursor]].append((k, v))
    bitmap = sum(1 << i for i, c in enumerate(children) if c)
    if has_value:
        hashed, v = _value(value, inline_limit)
        kind = HASHED_VALUE_BRANCH if hashed else BRANCH_WITH_VALUE
    else:
        v, kind = b"", BRANCH_NO_VALUE
    out = bytearray(_partial(partial, kind) + bitmap.to_bytes(2, "little") + v)
    for c in children:
        if c:
            out += _child(_node(c, cursor + 1, inline_limit))
    return bytes(out)


def _nibbles(key: bytes) -> list[int]:
    return [n for b in key for n in (b >> 4, b & 0x0F)]


def trie_root(pairs: list[tuple[bytes, bytes]], state_version: int = 0) -> bytes:
    """The Blake2-256 trie root of key/value pairs, as sp-trie's LayoutV0 (0) or LayoutV1 (1)."""
    if state_version not in (0, 1):
        raise ValueError(f"unknown state version {state_version}")
    items = sorted({k: v for k, v in pairs}.items())
    limit = V1_INLINE_LIMIT if state_version == 1 else None
    return blake2_256(_node([(_nibbles(k), v) for k, v in items], 0, limit))


def ordered_trie_root(values: list[bytes], state_version: int = 0) -> bytes:
    """The root of a list keyed by compact-encoded index: how a header commits to its extrinsics."""
    return trie_root([(compact(i), v) for i, v in enumerate(values)], state_version)
