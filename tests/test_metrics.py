import math

import numpy as np
import pytest

from cifake.data import CIFAR10_CLASSES
from cifake.metrics import compute_metrics


def _logit(p):
    return math.log(p / (1 - p))


def test_known_answer_with_real_as_positive():
    # labels: 3 REAL, 3 FAKE. Predictions: REAL,REAL,FAKE | REAL,FAKE,FAKE -> TP=2 FN=1 FP=1 TN=2
    probs = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1]
    labels = [1, 1, 1, 0, 0, 0]
    m = compute_metrics(np.array([_logit(p) for p in probs]), np.array(labels))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"]["matrix"] == [[2, 1], [1, 2]]  # rows true FAKE, REAL; columns predicted
    # ROC-AUC: of the 9 REAL/FAKE pairs, REAL scores higher in 8
    assert m["roc_auc"] == pytest.approx(8 / 9)
    expected_loss = -np.mean([math.log(p) if y else math.log(1 - p) for p, y in zip(probs, labels)])
    assert m["loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_fake_as_positive_swaps_roles():
    # 4 REAL all called REAL; 4 FAKE of which 1 called REAL: REAL precision 4/5, FAKE precision 1, FAKE recall 3/4
    probs = [0.9, 0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.3]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    m = compute_metrics(np.array([_logit(p) for p in probs]), np.array(labels))
    assert m["precision"] == pytest.approx(4 / 5) and m["recall"] == pytest.approx(1.0)
    assert m["fake_precision"] == pytest.approx(1.0) and m["fake_recall"] == pytest.approx(3 / 4)
    assert m["fake_f1"] == pytest.approx(2 * 0.75 / 1.75)


def test_per_class_accuracy_is_split_by_label():
    logits = np.array([2.0, -2.0, 2.0, -2.0])
    labels = np.array([1, 1, 0, 0])
    classes = np.array([3, 3, 5, 3])
    m = compute_metrics(logits, labels, classes)
    assert m["per_class_accuracy"]["REAL"]["cat"] == 0.5
    assert m["per_class_accuracy"]["FAKE"]["dog"] == 0.0 and m["per_class_accuracy"]["FAKE"]["cat"] == 1.0
    assert m["per_class_accuracy"]["REAL"]["airplane"] is None


def test_single_label_set_has_no_auc():
    m = compute_metrics(np.array([1.0, 2.0]), np.array([1, 1]))
    assert m["accuracy"] == 1.0 and m["roc_auc"] is None and m["average_precision"] is None
    assert m["fake_roc_auc"] is None and m["fake_average_precision"] is None
    assert m["fake_recall"] is None  # no FAKE image: recall of FAKE is undefined, not 0
    only_fakes = compute_metrics(np.array([-1.0, 2.0]), np.array([0, 0]))
    assert only_fakes["recall"] is None and only_fakes["fake_recall"] == 0.5


def test_no_verdict_of_a_label_scores_0_silently_and_the_matrix_keeps_both_labels():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns where precision divides by 0, unless told what it is
        nothing_called_real = compute_metrics(np.array([-1.0, -2.0, -3.0]), np.array([1, 0, 0]))
        all_real = compute_metrics(np.array([1.0, 2.0]), np.array([1, 1]))
    assert nothing_called_real["precision"] == 0.0 and nothing_called_real["f1"] == 0.0
    assert nothing_called_real["recall"] == 0.0 and nothing_called_real["fake_precision"] == pytest.approx(2 / 3)
    assert all_real["fake_precision"] == 0.0 and all_real["fake_f1"] == 0.0
    assert all_real["confusion_matrix"]["matrix"] == [[0, 0], [0, 2]]  # rows FAKE, REAL even with no FAKE
    assert nothing_called_real["confusion_matrix"]["matrix"] == [[2, 0], [1, 0]]


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="^cannot compute metrics of zero images$"):
        compute_metrics(np.array([]), np.array([]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_metric_agrees_with_scikit_learn_computed_independently(seed):
    """Random logits (some exactly at the threshold) and labels: each figure against scikit-learn's."""
    from sklearn import metrics as sk

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    logits = (rng.normal(0, 2, 300) + 1.5 * (labels - 0.5)).astype(np.float32)
    logits[:10] = 0.0  # P(REAL) = 0.5 exactly: called FAKE, as P(REAL) > 0.5 is needed for REAL
    classes = rng.integers(0, 10, 300)
    got = compute_metrics(logits, labels, classes)
    prob_real = 1 / (1 + np.exp(-logits.astype(np.float64)))
    predicted = (prob_real > 0.5).astype(int)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert got["loss"] == pytest.approx(sk.log_loss(labels, prob_real), rel=1e-5)
    for prefix, truth, guess, score in (("", labels, predicted, prob_real),
                                        ("fake_", 1 - labels, 1 - predicted, 1 - prob_real)):
        assert got[f"{prefix}precision"] == pytest.approx(sk.precision_score(truth, guess))
        assert got[f"{prefix}recall"] == pytest.approx(sk.recall_score(truth, guess))
        assert got[f"{prefix}f1"] == pytest.approx(sk.f1_score(truth, guess))
        assert got[f"{prefix}roc_auc"] == pytest.approx(sk.roc_auc_score(truth, score), abs=1e-6)
        assert got[f"{prefix}average_precision"] == pytest.approx(sk.average_precision_score(truth, score), abs=1e-6)
    assert got["confusion_matrix"]["matrix"] == sk.confusion_matrix(labels, predicted, labels=[0, 1]).tolist()
    for label, name in ((1, "REAL"), (0, "FAKE")):
        for k, class_name in enumerate(CIFAR10_CLASSES):
            chosen = (labels == label) & (classes == k)
            expected = float((predicted[chosen] == label).mean()) if chosen.any() else None
            assert got["per_class_accuracy"][name][class_name] == pytest.approx(expected), (name, class_name)


def test_per_source_figures_agree_with_scikit_learn_on_a_hand_made_set():
    """Each generator's accuracy, mean P(REAL) and its ROC-AUC against the REAL images alone (not against the
    other generators), at a threshold other than 0.5; one source per label gives no table."""
    from sklearn import metrics as sk

    rng = np.random.default_rng(7)
    sources = np.array(["REAL"] * 40 + ["gen-a"] * 25 + ["gen-b"] * 35)
    labels = (sources == "REAL").astype(int)
    # gen-a is easy to tell from REAL, gen-b hard: a pooled AUC would sit between them
    shift = np.select([sources == "REAL", sources == "gen-a"], [1.0, -2.0], -0.2)
    logits = (rng.normal(0, 1, 100) + shift).astype(np.float32)
    prob_real = 1 / (1 + np.exp(-logits.astype(np.float64)))
    got = compute_metrics(logits, labels, threshold=0.6, sources=sources)["per_source"]
    assert set(got) == {"REAL", "gen-a", "gen-b"}
    for source, label in (("REAL", 1), ("gen-a", 0), ("gen-b", 0)):
        mine = sources == source
        versus = mine | (labels != label)
        row = got[source]
        assert row["label"] == ("REAL" if label else "FAKE") and row["n"] == mine.sum()
        assert row["accuracy"] == pytest.approx(((prob_real[mine] > 0.6) == label).mean())
        assert row["mean_prob_real"] == pytest.approx(prob_real[mine].mean(), rel=1e-5)
        assert row["roc_auc"] == pytest.approx(sk.roc_auc_score(labels[versus], prob_real[versus]), abs=1e-6)
    assert got["gen-a"]["roc_auc"] > got["gen-b"]["roc_auc"] + 0.2
    assert "per_source" not in compute_metrics(logits, labels, sources=np.where(labels, "REAL", "FAKE"))
    only_fakes = compute_metrics(logits[40:], labels[40:], sources=sources[40:])["per_source"]
    assert only_fakes["gen-a"]["roc_auc"] is None  # nothing of the other label to tell it from


def test_the_threshold_decides_every_verdict_and_the_record_names_it():
    """The same logits at thresholds 0.7 and 0.5 give different verdicts, alike in the accuracy, the confusion
    matrix and the per-source accuracy. An image exactly at the threshold (logit 0, P(REAL) exactly 0.5 on any
    CPU) is FAKE: REAL needs more than the threshold."""
    logits = np.array([2.2, 0.4, 0.0, -1.4, 0.4, 0.4, -2.2])  # P(REAL) 0.90, 0.60, 0.50, 0.20, 0.60, 0.60, 0.10
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    sources = np.array(["REAL", "REAL", "REAL", "gen-a", "gen-a", "gen-a", "gen-b"])
    strict = compute_metrics(logits, labels, threshold=0.7, sources=sources)
    assert strict["n"] == 7 and strict["threshold"] == 0.7
    assert strict["accuracy"] == pytest.approx(5 / 7)  # REAL at 0.6 and 0.5 called FAKE, every FAKE called FAKE
    assert strict["confusion_matrix"] == {"rows": "true label", "columns": "predicted label",
                                          "labels": ["FAKE", "REAL"], "matrix": [[4, 0], [2, 1]]}
    assert strict["per_source"]["REAL"]["accuracy"] == pytest.approx(1 / 3)
    assert strict["per_source"]["gen-a"]["accuracy"] == 1.0
    even = compute_metrics(logits, labels, sources=sources)
    assert even["threshold"] == 0.5 and even["accuracy"] == pytest.approx(4 / 7)
    assert even["confusion_matrix"]["matrix"] == [[2, 2], [1, 2]]
    assert even["per_source"]["REAL"]["accuracy"] == pytest.approx(2 / 3)  # the one at exactly 0.5 is FAKE
    assert even["per_source"]["gen-a"]["accuracy"] == pytest.approx(1 / 3)


def test_per_class_and_per_source_tables_appear_whenever_there_is_something_to_split():
    # every image an airplane (class 0): still a per-class table; -1 (no CIFAR class) everywhere: none
    airplanes = compute_metrics(np.array([1.0, -1.0]), np.array([1, 0]), classes=np.array([0, 0]))
    assert airplanes["per_class_accuracy"]["REAL"]["airplane"] == 1.0
    assert "per_class_accuracy" not in compute_metrics(np.array([1.0, -1.0]), np.array([1, 0]),
                                                       classes=np.array([-1, -1]))
    # two REAL sources and one FAKE source are worth a table as much as the other way round
    two_real = compute_metrics(np.array([1.0, 2.0, -1.0]), np.array([1, 1, 0]), sources=np.array(["a", "b", "gen"]))
    assert set(two_real["per_source"]) == {"a", "b", "gen"}


def test_logits_are_scored_in_float32_whatever_their_type_as_the_detector_scores_them():
    """A logit of 1e-9 gives P(REAL) exactly 0.5 in float32 (the model's and the Detector's precision), so FAKE at
    threshold 0.5; in float64 it would be REAL. Python floats and float64 arrays get float32's verdicts."""
    logits = [1e-9, 1e-9, 3.0, -3.0]
    labels = np.array([1, 0, 1, 0])
    as_float32 = compute_metrics(np.array(logits, np.float32), labels)
    assert as_float32["confusion_matrix"]["matrix"] == [[2, 0], [1, 1]]
    for given in (logits, np.array(logits)):
        assert compute_metrics(given, labels) == as_float32
