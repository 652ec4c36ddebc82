"""The CKKS engine against plaintext scikit-learn, on the real models and the real test splits."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from analytics.blobs import FileSystemBlobStore
from analytics.compute import score_batch
from analytics.diagnostic_models import breast_cancer_model, diabetes_model
from analytics.he import TenSEALEngine
from analytics.trainers import SPLIT_SEED, TEST_SIZE, dataset_split
from health_platform.model_catalogue import declared

pytestmark = pytest.mark.he


def breast_cancer_split():
    return dataset_split(declared("breast-cancer"))


@pytest.fixture(scope="module")
def engine():
    return TenSEALEngine()


@pytest.fixture(scope="module")
def keys(engine):
    return engine.keygen()


def _encrypted_scores(engine, keys, model, features):
    clipped, outside = model.clip(features)
    assert not outside.any()
    columns = engine.encrypt_columns(keys.public, clipped)
    return engine.decrypt(
        keys.secret, engine.linear_score(keys.compute, columns, model.weights, model.bias), len(features)
    )


def test_encrypted_breast_cancer_labels_equal_scikit_learn_on_the_whole_test_split(engine, keys):
    x_train, x_test, y_train, _ = breast_cancer_split()
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=SPLIT_SEED))
    reference.fit(x_train, y_train)
    model = breast_cancer_model()

    logits = _encrypted_scores(engine, keys, model, x_test)

    sklearn_malignant = reference.predict(x_test) == 0  # sklearn's class 0 is malignant
    encrypted_malignant = np.array([r["label"] == "malignant" for r in model.interpret(logits)])
    assert len(x_test) == 143
    assert (encrypted_malignant == sklearn_malignant).all()
    sklearn_probability = reference.predict_proba(x_test)[:, 0]
    encrypted_probability = np.array([r["score"] for r in model.interpret(logits)])
    assert np.abs(encrypted_probability - sklearn_probability).max() < 1e-3
    assert np.abs(logits - model.score_plain(x_test)).max() < 1e-3


def test_encrypted_diabetes_predictions_equal_scikit_learn_within_1e_3_on_the_whole_test_split(engine, keys):
    """scikit-learn's own LinearRegression, fitted as the trainer fits it (analytics.trainers.linear_regression:
    ordinary least squares on the raw features, split as dataset_split splits), on scikit-learn's own copy of
    the dataset: nothing of the platform's but the kept weights under test."""
    data = load_diabetes(scaled=False)
    x_train, x_test, y_train, _ = train_test_split(data.data, data.target, test_size=TEST_SIZE, random_state=SPLIT_SEED)
    reference = LinearRegression().fit(x_train, y_train)
    model = diabetes_model()

    predictions = _encrypted_scores(engine, keys, model, x_test)

    assert len(x_test) == 111
    assert np.abs(predictions - reference.predict(x_test)).max() < 1e-3
    assert np.abs(predictions - model.score_plain(x_test)).max() < 1e-3


def test_a_full_ciphertext_of_records_is_scored_correctly(engine, keys):
    model = breast_cancer_model()
    rng = np.random.default_rng(7)
    low, high = np.asarray(model.feature_min), np.asarray(model.feature_max)
    features = low + rng.random((engine.slots, len(low))) * (high - low)
    assert np.abs(_encrypted_scores(engine, keys, model, features) - model.score_plain(features)).max() < 1e-3


def test_clipping_keeps_an_extreme_value_from_corrupting_the_other_records(engine, keys):
    model = breast_cancer_model()
    _, x_test, _, _ = breast_cancer_split()
    features = x_test[:10].copy()
    features[3, 0] = 1e12  # one absurd value
    clipped, outside = model.clip(features)
    assert outside.tolist() == [i == 3 for i in range(10)]
    columns = engine.encrypt_columns(keys.public, clipped)
    scores = engine.decrypt(keys.secret, engine.linear_score(keys.compute, columns, model.weights, model.bias), 10)
    others = [i for i in range(10) if i != 3]
    assert np.abs(scores[others] - model.score_plain(x_test[:10])[others]).max() < 1e-3


def test_the_public_and_compute_contexts_cannot_decrypt(engine, keys):
    columns = engine.encrypt_columns(keys.public, breast_cancer_split()[1][:4])
    assert not engine.is_secret_context(keys.public)
    assert not engine.is_secret_context(keys.compute)
    assert engine.is_secret_context(keys.secret)
    assert len(keys.compute) < 1000  # parameters only
    for context in (keys.public, keys.compute):
        with pytest.raises(ValueError, match="no secret key"):
            engine.decrypt(context, columns[0], 4)


def test_decrypt_many_reads_each_ciphertext_as_decrypt_does(engine, keys):
    model = breast_cancer_model()
    features = [model.clip(np.asarray(breast_cancer_split()[1][i : i + n]))[0] for i, n in ((0, 7), (7, 3))]
    scores = [
        engine.linear_score(keys.compute, engine.encrypt_columns(keys.public, f), model.weights, model.bias)
        for f in features
    ]
    many = engine.decrypt_many(keys.secret, [(scores[0], 7), (scores[1], 3)])
    assert [len(m) for m in many] == [7, 3]
    for one, ciphertext, count, f in zip(many, scores, (7, 3), features, strict=True):
        assert np.array_equal(one, engine.decrypt(keys.secret, ciphertext, count))
        assert np.abs(one - model.score_plain(f)).max() < 1e-3
    with pytest.raises(ValueError, match="no secret key"):
        engine.decrypt_many(keys.public, [(scores[0], 7)])


def test_the_compute_side_refuses_a_context_holding_a_secret_key_and_keeps_none(engine, keys):
    model = breast_cancer_model()
    columns = engine.encrypt_columns(keys.public, model.clip(np.asarray(breast_cancer_split()[1][:4]))[0])
    scoring = TenSEALEngine()
    with pytest.raises(ValueError, match="must not hold a secret key"):
        scoring.linear_score(keys.secret, columns, model.weights, model.bias)
    scoring.linear_score(keys.compute, columns, model.weights, model.bias)
    assert not any(context.has_secret_key() for context in scoring._public_contexts.values())


def test_the_compute_step_reads_its_context_once_and_never_keeps_a_secret_one(keys, tmp_path, monkeypatch):
    model = breast_cancer_model()
    blobs = FileSystemBlobStore(tmp_path)
    engine = TenSEALEngine()
    columns = engine.encrypt_columns(keys.public, model.clip(np.asarray(breast_cancer_split()[1][:4]))[0])
    column_keys = [[blobs.put(c) for c in columns]] * 2  # two chunks
    loads = []
    real_context_from = engine._ts.context_from
    monkeypatch.setattr(engine._ts, "context_from", lambda data: loads.append(len(data)) or real_context_from(data))

    scoring = {"engine": engine, "blobs": blobs, "column_keys": column_keys, "weights": model.weights}
    score_keys = score_batch(compute_context_key=blobs.put(keys.compute), bias=model.bias, **scoring)
    assert loads == [len(keys.compute)]  # checked for a secret key, then scored with, read once
    assert len(score_keys) == 2

    with pytest.raises(PermissionError):
        score_batch(compute_context_key=blobs.put(keys.secret), bias=model.bias, **scoring)
    assert engine.is_secret_context(keys.secret)
    assert not any(context.has_secret_key() for context in engine._public_contexts.values())
    assert loads[1:] == [len(keys.secret)] * 2  # a secret context is read again each time: never kept


@pytest.mark.parametrize("model", [breast_cancer_model(), diabetes_model()], ids=lambda model: model.name)
def test_a_full_ciphertext_decrypts_within_1e_7_of_the_plaintext_score_even_at_the_ranges_corners(engine, keys, model):
    """At a million records some score lies within 1e-5 of the threshold: the scoring parameters keep the error
    far below that (about 1e-8; 2e-5 with the 2^40 scale used before), on random features and at the corners of
    the clipped range where the score is largest."""
    rng = np.random.default_rng(11)
    low, high = np.asarray(model.feature_min), np.asarray(model.feature_max)
    features = low + rng.random((engine.slots, len(low))) * (high - low)
    weights = np.asarray(model.weights)
    features[0], features[1] = np.where(weights > 0, high, low), np.where(weights > 0, low, high)
    error = np.abs(_encrypted_scores(engine, keys, model, features) - model.score_plain(features))
    assert error.max() < 1e-7
    assert np.abs(model.score_plain(features[:2])).max() == pytest.approx(model.score_bound())


def test_a_model_whose_scores_exceed_the_precise_parameters_gets_the_wide_ones_and_scores_right(engine):
    """The precise parameters hold scores up to 2^10: a model beyond that gets keys that hold it (a CKKS value past
    its room decrypts to a wrong number, it does not fail); one beyond every parameter set is refused."""
    from dataclasses import replace

    from analytics.he import SCORING_PARAMETERS, score_room, scoring_parameters

    model = breast_cancer_model()
    large = replace(model, weights=tuple(50 * w for w in model.weights), bias=50 * model.bias)
    precise, wide = (score_room(scale) for _, scale in SCORING_PARAMETERS)
    assert (precise, wide) == (2.0**10, 2.0**18)
    assert model.score_bound() < precise < large.score_bound() < wide
    low, high = np.asarray(model.feature_min), np.asarray(model.feature_max)
    features = np.stack([np.where(np.asarray(large.weights) > 0, high, low), (low + high) / 2])
    for bits, expected_good in ((0.0, False), (large.score_bound(), True)):
        keys = engine.keygen(score_bound=bits)
        scores = _encrypted_scores(engine, keys, large, features)
        assert bool(np.abs(scores - large.score_plain(features)).max() < 1e-3) == expected_good
    assert engine.score_capacity(engine.keygen(score_bound=large.score_bound()).compute) >= large.score_bound()
    with pytest.raises(ValueError, match="exceed"):
        scoring_parameters(2.0**19)
