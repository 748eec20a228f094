"""The champion pipeline compiled for one row at a time: plain Python lists and dicts, no NumPy or pandas per call.

`core.model.scores` on one feature row costs ~10 ms, nearly all of it scikit-learn's and pandas' per-call
validation and conversion; the arithmetic is ~200 tree walks. `compile_pipeline` reads a fitted pipeline
(`core.model.build_pipeline`'s hist_gradient_boosting: ColumnTransformer(OrdinalEncoder, VarianceThreshold) +
HistGradientBoostingClassifier or HistGradientBoostingRegressor) once, and `RowModel.probability` then walks
the trees in pure Python, as scikit-learn's `_predictor.pyx` does:

- the pipeline's OrdinalEncoder: a known category gives its index, another one `unknown_value`, a missing one
  `encoded_missing_value` if missing values were seen in training, else `unknown_value` (`OrdinalEncoder.transform`);
- the classifier's own OrdinalEncoder (it re-encodes its categorical columns, with NaN for unknown and missing)
  is composed with the first at compile time, so each categorical feature is one dict lookup;
- at a node: NaN goes where `missing_go_to_left` says; a categorical value below 0 likewise; one in the node's
  raw left bitset goes left, else one in the feature's known-categories bitset goes right, else the missing way;
  a numeric value goes left when `<= num_threshold`;
- the raw score is the baseline plus each tree's leaf value, added in the same order in float64; a classifier's
  probability is `1 / (1 + exp(-raw))`, SciPy's `expit`, which `HalfBinomialLoss.predict_proba` calls, and a
  regressor's value the raw score itself (squared error's identity link).

So the scores equal `predict_proba`'s (or `predict`'s; mlsys_tests/test_rowmodel.py holds them to 1e-12, and
`compile_pipeline` checks a few synthetic rows itself before returning). Anything else (logistic regression,
the baseline, a pipeline of another shape, a multiclass model) compiles to None: callers keep the usual path.

Why not a converter: measured on the flights champion at one row (2026-12-02), treelite 4.8 scores in 0.6-0.8x
this module's time and skl2onnx/onnxruntime in 0.1-0.8x, but onnxruntime's answers differ by up to 0.85 (skl2onnx
ignores HistGradientBoosting's categorical splits) and treelite's by up to 0.5 for a model trained with missing
categories (it mishandles negative category codes) and by 0.18 for unknown ones; both read the same private
scikit-learn attributes this module reads. Exact answers win: a model this module cannot compile is scored on the
table path, and the server says so (`/health`, `/metrics`).
scikit-learn is imported only inside `compile_pipeline`. The columns are the ones the pipeline was fitted on
(its ColumnTransformer's `feature_names_in_`), so any declared system's model compiles the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("mlsys.rowmodel")

NAN = float("nan")
_LEAF = -1


@dataclass(frozen=True)
class Input:
    """How one of the classifier's input columns comes from a feature row."""

    source: str  # the feature column
    table: dict[Any, float] | None  # category -> code; None for a numeric column (passed through as float)
    unknown: float = NAN  # the code of a category not in `table`
    missing: float = NAN  # the code of a missing category (None or NaN)


@dataclass(frozen=True)
class Forest:
    """All trees in flat parallel lists (node i of every tree, trees one after another); a leaf has feature -1."""

    roots: list[int]
    feature: list[int]
    threshold: list[float]
    left: list[int]
    right: list[int]
    missing: list[int]  # where a missing value goes: left or right
    categorical: list[bool]
    left_bits: list[int]  # a categorical node's raw left bitset, as one int (bit c: category c goes left)
    known_bits: list[int]  # the known categories of a categorical node's feature, likewise
    value: list[float]  # a leaf's value


@dataclass(frozen=True)
class RowModel:
    """The score of one feature row (a mapping holding the pipeline's columns): P(positive), equal to
    `predict_proba`'s, for a classifier (`link` "logit"); the value, equal to `predict`'s, for a regressor
    ("identity")."""

    inputs: tuple[Input, ...]
    baseline: float
    forest: Forest
    link: str = "logit"

    def encode(self, row: Mapping[str, Any]) -> list[float]:
        """The classifier's input vector for a feature row."""
        x = []
        for spec in self.inputs:
            value = row[spec.source]
            if spec.table is None:
                x.append(NAN if value is None else float(value))
            elif value is None or value != value:
                x.append(spec.missing)
            else:
                x.append(spec.table.get(value, spec.unknown))
        return x

    def raw(self, row: Mapping[str, Any]) -> float:
        x = self.encode(row)
        f = self.forest
        feature, threshold, left, right, missing, categorical, value = (
            f.feature, f.threshold, f.left, f.right, f.missing, f.categorical, f.value)
        total = self.baseline
        for node in f.roots:
            column = feature[node]
            while column >= 0:
                v = x[column]
                if v != v:  # NaN
                    node = missing[node]
                elif categorical[node]:
                    if v < 0:
                        node = missing[node]
                    elif f.left_bits[node] >> int(v) & 1:
                        node = left[node]
                    elif f.known_bits[node] >> int(v) & 1:
                        node = right[node]
                    else:
                        node = missing[node]
                elif v <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
                column = feature[node]
            total += value[node]
        return total

    def probability(self, row: Mapping[str, Any]) -> float:
        raw = self.raw(row)
        if self.link == "identity":
            return raw
        try:
            return 1.0 / (1.0 + math.exp(-raw))
        except OverflowError:  # exp(-raw) beyond float range: expit gives 0 there
            return 0.0

    def probabilities(self, rows: Sequence[Mapping[str, Any]]) -> list[float]:
        return [self.probability(row) for row in rows]


class NotCompilable(Exception):
    """The model is not a pipeline `compile_pipeline` knows how to reproduce exactly."""


def compile_pipeline(model: object, check: bool = True) -> RowModel | None:
    """The row-wise model of a fitted hist_gradient_boosting pipeline, or None for anything else.

    With `check`, a few synthetic rows (every known category, unknown and missing ones, values at and around
    the trees' thresholds, NaN) are scored both ways, and a difference above 1e-12 gives None (and a warning).
    """
    try:
        compiled = _compile(model)
        difference = _self_check(model, compiled) if check else 0.0
    except NotCompilable as exc:
        log.info("the model is scored without the row-wise path: %s", exc)
        return None
    except Exception as exc:  # an attribute missing or of another shape: not the model this module knows
        log.warning("the model could not be compiled row-wise (%s: %s); it is scored as a table", type(exc).__name__,
                    exc)
        return None
    if check and not difference <= 1e-12:
        log.warning("the row-wise model differs from predict_proba by %s; not used", difference)
        return None
    return compiled


def _compile(model: object) -> RowModel:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        raise NotCompilable(f"not a two-step Pipeline: {type(model).__name__}")
    encode, classify = model.steps[0][1], model.steps[1][1]
    if not isinstance(encode, ColumnTransformer) or not isinstance(
            classify, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        raise NotCompilable(f"steps are {type(encode).__name__}, {type(classify).__name__}")
    loss = classify._loss
    if isinstance(classify, HistGradientBoostingRegressor):
        if type(loss).__name__ != "HalfSquaredError" or type(loss.link).__name__ != "IdentityLink":
            raise NotCompilable(f"regression loss {type(loss).__name__}")
        link = "identity"
    else:
        if len(classify.classes_) != 2 or classify.n_trees_per_iteration_ != 1:
            raise NotCompilable("not a binary classifier")
        if type(loss).__name__ != "HalfBinomialLoss" or type(loss.link).__name__ != "LogitLink":
            raise NotCompilable(f"loss {type(loss).__name__}")
        link = "logit"
    outer = _column_transformer_inputs(encode)
    inputs = _classifier_inputs(classify, outer)
    known_cat_bitsets, f_idx_map = classify._bin_mapper.make_known_categories_bitsets()
    known = [_bits(row) for row in known_cat_bitsets]
    feature_known = [known[int(f_idx_map[i])] if len(known) else 0 for i in range(len(inputs))]
    forest = _forest(classify, feature_known)
    baseline = classify._baseline_prediction
    if baseline.shape != (1, 1):
        raise NotCompilable(f"baseline of shape {baseline.shape}")
    return RowModel(tuple(inputs), float(baseline[0, 0]), forest, link)


def _column_transformer_inputs(encode: Any) -> list[Input]:
    """The pipeline's ColumnTransformer as one `Input` per output column, in output order."""
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.preprocessing import OrdinalEncoder

    if getattr(encode, "sparse_output_", False):
        raise NotCompilable("sparse ColumnTransformer output")
    fitted = [str(c) for c in getattr(encode, "feature_names_in_", ())]
    if not fitted:
        raise NotCompilable("the ColumnTransformer was not fitted on named columns")
    outputs: list[tuple[int, list[Input]]] = []
    for name, transformer, columns in encode.transformers_:
        if transformer == "drop":
            continue
        names = _column_names(columns, fitted)
        if transformer == "passthrough":
            produced = [Input(c, None) for c in names]
        elif isinstance(transformer, OrdinalEncoder):
            produced = [_ordinal_input(transformer, i, c) for i, c in enumerate(names)]
        elif isinstance(transformer, VarianceThreshold):
            support = transformer.get_support()
            produced = [Input(c, None) for c, kept in zip(names, support, strict=True) if kept]
        else:
            raise NotCompilable(f"transformer {name!r} is a {type(transformer).__name__}")
        where = encode.output_indices_[name]
        if where.stop - where.start != len(produced):
            raise NotCompilable(f"transformer {name!r} gives {where.stop - where.start} columns, not {len(produced)}")
        outputs.append((where.start, produced))
    return [spec for _, produced in sorted(outputs, key=lambda part: part[0]) for spec in produced]


def _column_names(columns: Any, fitted: Sequence[str]) -> list[str]:
    names = [columns] if isinstance(columns, str) else list(columns)
    if not all(isinstance(c, str) and c in fitted for c in names):
        raise NotCompilable(f"columns selected by other than feature names: {names!r}")
    return names


def _ordinal_input(encoder: Any, index: int, source: str) -> Input:
    """One column of a fitted OrdinalEncoder, as `OrdinalEncoder.transform` encodes it."""
    if getattr(encoder, "_infrequent_enabled", False):
        raise NotCompilable("OrdinalEncoder with infrequent categories")
    if encoder.handle_unknown != "use_encoded_value":
        raise NotCompilable(f"OrdinalEncoder(handle_unknown={encoder.handle_unknown!r})")
    categories = encoder.categories_[index].tolist()
    missing_at = encoder._missing_indices.get(index)
    table = {}
    for position, category in enumerate(categories):
        if position == missing_at or _is_missing(category):
            continue
        table[category] = float(position)
    unknown = float(encoder.unknown_value)
    missing = float(encoder.encoded_missing_value) if missing_at is not None else unknown
    return Input(source, table, unknown, missing)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _classifier_inputs(classify: Any, outer: list[Input]) -> list[Input]:
    """Compose the classifier's own preprocessing (its OrdinalEncoder of the categorical columns, which it
    moves first) with the pipeline's encoding: one `Input` per column the trees read."""
    import numpy as np

    if classify.n_features_in_ != len(outer):
        raise NotCompilable(f"the classifier takes {classify.n_features_in_} columns, the encoding gives {len(outer)}")
    preprocessor = classify._preprocessor
    if preprocessor is None:
        return list(outer)
    placed: list[tuple[int, list[Input]]] = []
    for name, transformer, columns in preprocessor.transformers_:
        if transformer == "drop":
            continue
        positions = np.arange(len(outer))[columns].tolist()
        sources = [outer[p] for p in positions]
        if name == "encoder":
            produced = [_compose(spec, _ordinal_input(transformer, i, spec.source)) for i, spec in enumerate(sources)]
        elif name == "numerical":
            produced = sources
        else:
            raise NotCompilable(f"classifier preprocessor step {name!r}")
        where = preprocessor.output_indices_[name]
        if where.stop - where.start != len(produced):
            raise NotCompilable(f"classifier preprocessor step {name!r} does not map one to one")
        placed.append((where.start, produced))
    inputs = [spec for _, produced in sorted(placed, key=lambda part: part[0]) for spec in produced]
    if len(inputs) != len(outer):
        raise NotCompilable("the classifier's preprocessor does not keep every column")
    return inputs


def _compose(first: Input, second: Input) -> Input:
    """The classifier's encoder (`second`) applied to what the pipeline's (`first`) gives."""

    def then(code: float) -> float:
        if code != code:
            return second.missing
        return second.table.get(code, second.unknown)

    if first.table is None:  # a numeric column the classifier treats as categorical
        return Input(first.source, second.table, second.unknown, second.missing)
    return Input(first.source, {category: then(code) for category, code in first.table.items()},
                 then(first.unknown), then(first.missing))


def _bits(words: Any) -> int:
    """A bitset of 8 uint32 words (scikit-learn's layout: category c is bit c % 32 of word c // 32) as one int."""
    return sum(int(word) << (32 * i) for i, word in enumerate(words))


def _forest(classify: Any, feature_known: list[int]) -> Forest:
    roots: list[int] = []
    columns: dict[str, list] = {k: [] for k in ("feature", "threshold", "left", "right", "missing", "categorical",
                                                "left_bits", "known_bits", "value")}
    for iteration in classify._predictors:
        (predictor,) = iteration
        nodes = predictor.nodes
        bitsets = [_bits(row) for row in predictor.raw_left_cat_bitsets]
        base = len(columns["feature"])
        roots.append(base)
        for node in nodes.tolist():  # tuples in the order of PREDICTOR_RECORD_DTYPE's fields
            record = dict(zip(nodes.dtype.names, node, strict=True))
            leaf = bool(record["is_leaf"])
            categorical = not leaf and bool(record["is_categorical"])
            feature = int(record["feature_idx"])
            left, right = base + int(record["left"]), base + int(record["right"])
            columns["feature"].append(_LEAF if leaf else feature)
            columns["threshold"].append(float(record["num_threshold"]))
            columns["left"].append(left)
            columns["right"].append(right)
            columns["missing"].append(left if record["missing_go_to_left"] else right)
            columns["categorical"].append(categorical)
            columns["left_bits"].append(bitsets[int(record["bitset_idx"])] if categorical else 0)
            columns["known_bits"].append(feature_known[feature] if categorical else 0)
            columns["value"].append(float(record["value"]))
    return Forest(roots=roots, **columns)


def _self_check(model: Any, compiled: RowModel) -> float:
    """The largest difference from `predict_proba` (a regressor's `predict`) on synthetic rows that take every
    branch kind."""
    import pandas as pd
    from sklearn.preprocessing import OrdinalEncoder

    encode = model.steps[0][1]
    columns = [str(c) for c in encode.feature_names_in_]
    encoded = {c for _, transformer, selected in encode.transformers_ if isinstance(transformer, OrdinalEncoder)
               for c in ([selected] if isinstance(selected, str) else selected)}
    categorical = [c for c in columns if c in encoded]
    numeric = [c for c in columns if c not in encoded]
    thresholds: dict[str, list[float]] = {}
    forest = compiled.forest
    readers = [spec.source for spec in compiled.inputs]
    for node, column in enumerate(forest.feature):
        if column >= 0 and not forest.categorical[node]:
            thresholds.setdefault(readers[column], []).append(forest.threshold[node])
    rows = []
    count = max([len(s.table) for s in compiled.inputs if s.table] + [8]) + 2
    for i in range(count):
        row: dict[str, Any] = {}
        for spec_column in categorical:
            spec = next((s for s in compiled.inputs if s.source == spec_column and s.table), None)
            known = list(spec.table) if spec else []
            choices = [*known, "never seen", None]
            row[spec_column] = choices[(i * 7 + len(row)) % len(choices)]
        for column in numeric:
            cuts = sorted(set(thresholds.get(column, [0.0])))
            pick = cuts[(i * 5 + len(row)) % len(cuts)]
            row[column] = (NAN, pick, pick + 1e-9, pick - 1e-9)[i % 4]
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    for column in categorical:
        frame[column] = frame[column].astype("str")
    for column in numeric:
        frame[column] = frame[column].astype("float64")
    expected = (model.predict(frame) if compiled.link == "identity" else model.predict_proba(frame)[:, 1]).tolist()
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return max(abs(a - b) for a, b in zip(compiled.probabilities(rows), expected, strict=True))
