import hashlib
import json
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle

VECTORS = json.loads((Path(__file__).resolve().parent / "vectors/rfc6962_vectors.json").read_text())
MAX_SIZE = 300


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 as written, over leaf hashes: the reference the stored-node code must agree with."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.hash_children(mth(leaves[:k]), mth(leaves[k:]))


LEAVES = [merkle.hash_leaf(i.to_bytes(4, "big")) for i in range(MAX_SIZE)]
# Every tree of size <= MAX_SIZE is a prefix of this one, and its complete subtrees are the prefix's nodes.
TREE = merkle.InMemoryTree(LEAVES)


@cache
def root_of(size: int) -> bytes:
    return TREE.root(size)


def flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


class CountingSource:
    def __init__(self, tree: merkle.InMemoryTree) -> None:
        self.tree = tree
        self.reads = 0

    def node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return self.tree.node(level, index)


def test_leaf_and_node_hashes_match_the_vectors():
    leaves = [h(x) for x in VECTORS["leaves"]]
    assert [merkle.hash_leaf(x).hex() for x in leaves] == VECTORS["leaf_hashes"]
    tree = merkle.InMemoryTree([merkle.hash_leaf(x) for x in leaves])
    for level, hashes in enumerate(VECTORS["node_hashes_by_level"]):
        assert [tree.node(level, i).hex() for i in range(len(hashes))] == hashes
    assert merkle.EMPTY_ROOT.hex() == VECTORS["hash"]["empty_root"]


def test_every_root_in_the_vectors_is_reproduced():
    tree = merkle.InMemoryTree([h(x) for x in VECTORS["leaf_hashes"]])
    for size, expected in VECTORS["roots"].items():
        assert merkle.root(int(size), tree).hex() == expected


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}")
def test_every_inclusion_proof_in_the_vectors_is_reproduced_and_verifies(case):
    tree = merkle.InMemoryTree([h(x) for x in VECTORS["leaf_hashes"]])
    proof = merkle.inclusion_proof(case["leaf_index"], case["tree_size"], tree)
    assert [p.hex() for p in proof] == case["proof"]
    assert merkle.hash_leaf(h(case["leaf_hex"])).hex() == case["leaf_hash"]
    assert merkle.verify_inclusion(
        case["leaf_index"], case["tree_size"], h(case["leaf_hash"]), proof, h(case["root"])
    )


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: f"{c['size1']}-to-{c['size2']}")
def test_every_consistency_proof_in_the_vectors_is_reproduced_and_verifies(case):
    tree = merkle.InMemoryTree([h(x) for x in VECTORS["leaf_hashes"]])
    proof = merkle.consistency_proof(case["size1"], case["size2"], tree)
    assert [p.hex() for p in proof] == case["proof"]
    assert merkle.root(case["size1"], tree).hex() == case["root1"]
    assert merkle.verify_consistency(case["size1"], case["size2"], h(case["root1"]), h(case["root2"]), proof)


@pytest.mark.parametrize("probe", VECTORS["probes"]["inclusion"], ids=lambda p: p["file"])
def test_inclusion_probes_pass_or_fail_as_upstream_expects(probe):
    ok = merkle.verify_inclusion(
        probe["leaf_index"],
        probe["tree_size"],
        h(probe["leaf_hash"]),
        [h(p) for p in probe["proof"]],
        h(probe["root"]),
    )
    assert ok is not probe["want_error"]


@pytest.mark.parametrize("probe", VECTORS["probes"]["consistency"], ids=lambda p: p["file"])
def test_consistency_probes_pass_or_fail_as_upstream_expects(probe):
    ok = merkle.verify_consistency(
        probe["size1"], probe["size2"], h(probe["root1"]), h(probe["root2"]), [h(p) for p in probe["proof"]]
    )
    assert ok is not probe["want_error"]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, MAX_SIZE), st.data())
def test_subtree_hash_equals_the_naive_merkle_tree_hash(size, data):
    assert merkle.root(size, TREE) == mth(LEAVES[:size])
    start = data.draw(st.integers(0, size))
    end = data.draw(st.integers(start, size))
    assert merkle.subtree_hash(start, end, TREE) == mth(LEAVES[start:end])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, MAX_SIZE))
def test_a_small_trees_root_and_every_proof_at_once_are_those_of_the_tree(size):
    root, proofs = merkle.root_and_inclusion_proofs(LEAVES[:size])
    assert root == mth(LEAVES[:size])
    assert proofs == [merkle.inclusion_proof(i, size, TREE) for i in range(size)]


def test_a_root_reads_one_stored_node_per_set_bit_of_the_size():
    for size in (1, 2, 3, 7, 8, 100, 255, 256, 300):
        source = CountingSource(TREE)
        merkle.root(size, source)
        assert source.reads == size.bit_count()


@settings(max_examples=300, deadline=None)
@given(st.integers(1, MAX_SIZE), st.data())
def test_every_inclusion_proof_verifies_and_any_change_breaks_it(size, data):
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(index, size, TREE)
    root, leaf = root_of(size), LEAVES[index]
    assert merkle.verify_inclusion(index, size, leaf, proof, root)
    assert merkle.root_from_inclusion(index, size, leaf, proof) == root

    bit = data.draw(st.integers(0, 255))
    assert not merkle.verify_inclusion(index, size, flip(leaf, bit), proof, root)
    assert not merkle.verify_inclusion(index, size, leaf, proof, flip(root, bit))
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        assert not merkle.verify_inclusion(
            index, size, leaf, [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]], root
        )
        assert not merkle.verify_inclusion(index, size, leaf, proof[:-1], root)
    assert not merkle.verify_inclusion(index, size, leaf, [*proof, root], root)
    other_index = data.draw(st.integers(0, size - 1).filter(lambda i: i != index)) if size > 1 else index + 1
    assert not merkle.verify_inclusion(other_index, size, leaf, proof, root)
    # A proof for one tree proves nothing about another: any other size, with that tree's own root.
    other_size = (
        data.draw(st.integers(index + 1, MAX_SIZE).filter(lambda s: s != size)) if index + 1 < MAX_SIZE else 0
    )
    if other_size:
        assert not merkle.verify_inclusion(index, other_size, leaf, proof, root_of(other_size))


@settings(max_examples=300, deadline=None)
@given(st.integers(2, MAX_SIZE), st.data())
def test_every_consistency_proof_verifies_and_any_change_breaks_it(second, data):
    first = data.draw(st.integers(1, second - 1))
    proof = merkle.consistency_proof(first, second, TREE)
    first_root, second_root = root_of(first), root_of(second)
    assert merkle.verify_consistency(first, second, first_root, second_root, proof)

    bit = data.draw(st.integers(0, 255))
    at = data.draw(st.integers(0, len(proof) - 1))
    changed = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
    assert not merkle.verify_consistency(first, second, first_root, second_root, changed)
    assert not merkle.verify_consistency(first, second, flip(first_root, bit), second_root, proof)
    assert not merkle.verify_consistency(first, second, first_root, flip(second_root, bit), proof)
    assert not merkle.verify_consistency(first, second, first_root, second_root, proof[:-1])
    assert not merkle.verify_consistency(first, second, first_root, second_root, [*proof, second_root])
    assert not merkle.verify_consistency(first, second, second_root, first_root, proof)
    other_first = data.draw(st.integers(1, second - 1).filter(lambda s: s != first)) if second > 2 else 0
    if other_first:
        assert not merkle.verify_consistency(other_first, second, root_of(other_first), second_root, proof)
    other_second = data.draw(st.integers(first + 1, MAX_SIZE).filter(lambda s: s != second))
    assert not merkle.verify_consistency(first, other_second, first_root, root_of(other_second), proof)


def test_consistency_with_itself_needs_an_empty_proof_and_equal_roots():
    root = root_of(5)
    assert merkle.consistency_proof(5, 5, TREE) == []
    assert merkle.verify_consistency(5, 5, root, root, [])
    assert not merkle.verify_consistency(5, 5, root, root_of(4), [])
    assert not merkle.verify_consistency(5, 5, root, root, [root])


@pytest.mark.parametrize(
    "args",
    [
        (0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, []),
        (0, 5, merkle.EMPTY_ROOT, b"x" * 32, []),
        (3, 2, b"x" * 32, b"x" * 32, []),
        (-1, 2, b"x" * 32, b"x" * 32, [b"x" * 32]),
        (1, 2, b"x" * 32, b"x" * 32, [b"short"]),
        (1, 2, b"x" * 32, b"x" * 32, [None]),
        ("1", 2, b"x" * 32, b"x" * 32, [b"x" * 32]),
    ],
)
def test_malformed_consistency_checks_return_false_without_raising(args):
    assert merkle.verify_consistency(*args) is False


@pytest.mark.parametrize(
    "args",
    [
        (0, 0, b"x" * 32, [], b"x" * 32),
        (-1, 1, b"x" * 32, [], b"x" * 32),
        (0, 2, b"x" * 32, [b"y" * 31], b"x" * 32),
        (0, 2, b"x" * 31, [b"y" * 32], b"x" * 32),
        (2**64 - 1, 1, b"x" * 32, [], b"x" * 32),
    ],
)
def test_malformed_inclusion_checks_return_false_without_raising(args):
    assert merkle.verify_inclusion(*args) is False


def test_proofs_refuse_impossible_requests():
    with pytest.raises(ValueError):
        merkle.inclusion_proof(5, 5, TREE)
    with pytest.raises(ValueError):
        merkle.consistency_proof(6, 5, TREE)
    with pytest.raises(ValueError):
        TREE.root(MAX_SIZE + 1)


def test_nodes_completed_by_append_store_exactly_the_complete_subtrees():
    stored: dict[tuple[int, int], bytes] = {}
    for index, leaf in enumerate(LEAVES[:100]):
        completed = merkle.nodes_completed_by_append(index, leaf, lambda level, i: stored[(level, i)])
        assert len(completed) == 1 + ((index + 1) & -(index + 1)).bit_length() - 1
        for level, i, value in completed:
            assert (level, i) not in stored
            assert value == TREE.node(level, i)
            stored[(level, i)] = value
    assert set(stored) == {(lv, i) for lv in range(7) for i in range(100 >> lv)}
