"""Known-answer tests of the MNAD memory: read, update (code and paper rescaling) and the test-time gate."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomalib_vadproto.components.memory import Memory, memory_update


def unit(v):
    return torch.tensor(v, dtype=torch.float64) / torch.linalg.norm(torch.tensor(v, dtype=torch.float64))


def test_read_is_softmax_over_items_with_detached_weights():
    items = torch.eye(2, dtype=torch.float64)
    query = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    read, scores = Memory.read(query, items)
    w1, w2 = math.e / (math.e + 1), 1 / (math.e + 1)
    assert torch.allclose(scores, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(read, torch.tensor([[w1, w2]], dtype=torch.float64))
    # weights detached and items constant: no gradient flows through the read
    assert not read.requires_grad


def test_update_code_form_hand_computed():
    items = torch.eye(2, dtype=torch.float64)
    q1, q2 = unit([1.0, 0.0]), unit([0.6, 0.8])
    new = memory_update(items, torch.stack([q1, q2]), rescale="code")
    # q1 is nearest to p1 with v' = 1 (it holds the max of softmax over queries for p1)
    # q2 is nearest to p2 with v' = 1 (max for p2)
    assert torch.allclose(new[0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    expected = np.array([0.6, 1.8]) / np.linalg.norm([0.6, 1.8])
    assert np.allclose(new[1].numpy(), expected)


def test_update_code_and_paper_rescaling_differ_as_specified():
    items = torch.eye(2, dtype=torch.float64)
    q1 = unit([0.6, -0.8])  # nearest p1 (0.6 > -0.8)
    q3 = unit([0.70, 0.714])  # nearest p2, but more similar to p1 than q1 is
    queries = torch.stack([q1, q3])
    s1 = np.array([q1[0].item(), q3[0].item()])  # similarities to p1
    code = memory_update(items, queries, rescale="code")
    paper = memory_update(items, queries, rescale="paper")
    # code: v'(q1, p1) = exp(s1[0]) / exp(max s1) = exp(s1[0] - s1[1]) because q3 holds the max
    v_code = math.exp(s1[0] - s1[1])
    expected_code = np.array([1.0, 0.0]) + v_code * q1.numpy()
    assert np.allclose(code[0].numpy(), expected_code / np.linalg.norm(expected_code))
    # paper: the max runs over U_1 = {q1} only, so v'(q1, p1) = 1
    expected_paper = np.array([1.0, 0.0]) + q1.numpy()
    assert np.allclose(paper[0].numpy(), expected_paper / np.linalg.norm(expected_paper))
    # p2 is voted by q3 alone, which also holds p2's max in both forms
    expected_p2 = np.array([0.0, 1.0]) + q3.numpy()
    for new in (code, paper):
        assert np.allclose(new[1].numpy(), expected_p2 / np.linalg.norm(expected_p2))


def test_update_keeps_items_without_voters_and_unit_norm():
    items = F.normalize(torch.rand(5, 8, dtype=torch.float64), dim=1)
    queries = items[:1].repeat(3, 1)  # every query is nearest to item 0
    new = memory_update(items, queries)
    assert torch.allclose(new[1:], items[1:])
    assert torch.allclose(new.norm(dim=1), torch.ones(5, dtype=torch.float64))


def test_update_matches_a_loop_reference():
    torch.manual_seed(0)
    items = F.normalize(torch.randn(4, 6, dtype=torch.float64), dim=1)
    queries = F.normalize(torch.randn(30, 6, dtype=torch.float64), dim=1)
    s = (queries @ items.T).numpy()
    v = np.exp(s) / np.exp(s).sum(axis=0, keepdims=True)
    v = v / v.max(axis=0, keepdims=True)
    expected = items.numpy().copy()
    for m in range(4):
        for k in range(30):
            if s[k].argmax() == m:
                expected[m] += v[k, m] * queries[k].numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(memory_update(items, queries).numpy(), expected)


def test_invalid_rescale_and_size():
    with pytest.raises(ValueError, match="rescale"):
        memory_update(torch.eye(2), torch.eye(2), rescale="median")
    with pytest.raises(ValueError, match="at least 2 items"):
        Memory(1, 4)


def test_items_are_a_buffer_initialised_on_the_positive_orthant():
    memory = Memory(10, 16)
    assert "items" in dict(memory.named_buffers())
    assert not list(memory.parameters())
    assert torch.all(memory.items >= 0)
    assert torch.allclose(memory.items.norm(dim=1), torch.ones(10))
    assert "items" in memory.state_dict()


def test_gated_update_touches_only_the_test_copy_and_only_gated_clips():
    torch.manual_seed(1)
    memory = Memory(4, 6)
    trained = memory.items.clone()
    queries = F.normalize(torch.randn(2, 9, 6), dim=2)
    memory.gated_update_(queries, torch.tensor([False, True]))
    expected = memory_update(trained, queries[1])
    assert torch.allclose(memory.current_items(test_time=True), expected)
    assert torch.equal(memory.items, trained)
    # the copy persists across calls (videos) ...
    memory.gated_update_(queries, torch.tensor([True, False]))
    assert torch.allclose(memory.current_items(test_time=True), memory_update(expected, queries[0]))
    # ... until the next evaluation epoch resets it
    memory.reset_test_items()
    assert torch.equal(memory.current_items(test_time=True), trained)


def test_gated_update_applies_clips_sequentially_in_batch_order():
    torch.manual_seed(2)
    memory = Memory(3, 5)
    trained = memory.items.clone()
    queries = F.normalize(torch.randn(2, 7, 5), dim=2)
    memory.gated_update_(queries, torch.tensor([True, True]))
    assert torch.allclose(memory.current_items(True), memory_update(memory_update(trained, queries[0]), queries[1]))


def test_loading_a_state_dict_resets_the_test_copy():
    memory = Memory(3, 4)
    memory.gated_update_(F.normalize(torch.rand(1, 5, 4), dim=2), torch.tensor([True]))
    other = Memory(3, 4)
    memory.load_state_dict(other.state_dict())
    assert torch.equal(memory.current_items(True), other.items)
