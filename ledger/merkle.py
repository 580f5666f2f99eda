"""RFC 6962 / RFC 9162 Merkle tree over SHA-256: roots, inclusion and consistency proofs, and their checks.

Pure: no Django, no I/O. Proof generation reads complete-subtree hashes from a `NodeSource`, so the same code
serves an in-memory tree and the database's stored nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

_sha256 = hashlib.sha256

EMPTY_ROOT = _sha256(b"").digest()
HASH_SIZE = 32


def hash_leaf(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class NodeSource(Protocol):
    def node(self, level: int, index: int) -> bytes:
        """Hash of the complete subtree of 2**level leaves starting at leaf index * 2**level."""
        ...


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(start: int, end: int, source: NodeSource) -> bytes:
    """RFC 6962 MTH of leaves [start, end), reading stored nodes for every aligned complete subtree."""
    n = end - start
    if n < 0 or start < 0:
        raise ValueError(f"bad leaf range [{start}, {end})")
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start & (n - 1) == 0:
        return source.node(n.bit_length() - 1, start >> (n.bit_length() - 1))
    k = _split(n)
    return hash_children(subtree_hash(start, start + k, source), subtree_hash(start + k, end, source))


def root(size: int, source: NodeSource) -> bytes:
    return subtree_hash(0, size, source)


def inclusion_proof(index: int, size: int, source: NodeSource) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(index, D[0:size]), leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_hash(start + k, end, source))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k, source))
            start += k
    path.reverse()
    return path


def consistency_proof(first: int, second: int, source: NodeSource) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(first, D[0:second]) (SUBPROOF with b = true); empty when first is 0 or second."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    path: list[bytes] = []
    start, end, m, complete = 0, second, first, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            path.append(subtree_hash(start + k, end, source))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k, source))
            start += k
            m -= k
            complete = False
    if not complete:
        path.append(subtree_hash(start, end, source))
    path.reverse()
    return path


def root_and_inclusion_proofs(leaf_hashes: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root of a small tree and every leaf's inclusion proof (as `inclusion_proof` gives them, sibling first),
    in one pass over its k leaves: k - 1 hashes, where a proof at a time reads the tree again for each leaf."""
    proofs: list[list[bytes]] = [[] for _ in leaf_hashes]

    def subtree(start: int, end: int) -> bytes:
        if end - start == 1:
            return leaf_hashes[start]
        k = start + _split(end - start)
        left, right = subtree(start, k), subtree(k, end)
        for i in range(start, k):
            proofs[i].append(right)
        for i in range(k, end):
            proofs[i].append(left)
        return hash_children(left, right)

    if not leaf_hashes:
        return EMPTY_ROOT, []
    return subtree(0, len(leaf_hashes)), proofs


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2; False for any malformed input."""
    return _is_hash(root) and root_from_inclusion(index, size, leaf_hash, proof) == root


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root that an inclusion proof leads to from its leaf (RFC 9162 §2.1.3.2), for a root that is itself
    checked otherwise (by a signature over it); None for any malformed input."""
    if not (
        isinstance(index, int)
        and isinstance(size, int)
        and 0 <= index < size
        and _is_hash(leaf_hash)
        and all(_is_hash(p) for p in proof)
    ):
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2; False for any malformed input.

    A check against the empty tree proves nothing and is refused, as the upstream test data expects.
    """
    if not (isinstance(first, int) and isinstance(second, int)) or not 0 < first <= second:
        return False
    if not all(_is_hash(p) for p in proof):
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof or not (_is_hash(first_root) and _is_hash(second_root)):
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def nodes_completed_by_append(
    index: int, leaf_hash: bytes, get_node: Callable[[int, int], bytes]
) -> list[tuple[int, int, bytes]]:
    """(level, index, hash) of every complete subtree that appending leaf `index` completes, leaf first.

    Each parent is hashed from the stored left sibling (`get_node(level, index)`) and the new right child, so
    storing these rows keeps the tree current without rehashing history.
    """
    out = [(0, index, leaf_hash)]
    level, i, h = 0, index, leaf_hash
    while i & 1:
        h = hash_children(get_node(level, i - 1), h)
        level += 1
        i >>= 1
        out.append((level, i, h))
    return out


class InMemoryTree:
    """An append-only tree of leaf hashes holding every complete subtree node (about 2n hashes)."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def __len__(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> None:
        # Inline form of nodes_completed_by_append: this loop runs once per entry in the offline verifier.
        levels = self._levels
        levels[0].append(leaf_hash)
        i, level, h = len(levels[0]) - 1, 0, leaf_hash
        while i & 1:
            h = hash_children(levels[level][i - 1], h)
            level += 1
            i >>= 1
            if level == len(levels):
                levels.append([])
            levels[level].append(h)

    def node(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def _size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        return root(self._size(size), self)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self._size(size), self)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        return consistency_proof(first, self._size(second), self)
