"""MLflow's scoring protocol (mlsys_assets/core/server/protocol.py): every input format and content type becomes
rows, and every bad body (hostile ones included: 100,000 `[`, 2,000-deep lists, 10**400, repeated keys) is a
RequestError with a 4xx naming the problem, never another exception."""

from __future__ import annotations

import json
import random

import pytest

from mlsys_assets.core.server.protocol import (
    INPUT_FORMATS,
    MAX_LISTED_ERRORS,
    Parsed,
    RequestError,
    parse_request,
    show,
)

JSON = "application/json"


def parse(payload: object, max_rows: int = 100, positional: tuple[str, ...] = ()) -> Parsed:
    return parse_request(json.dumps(payload).encode(), JSON, max_rows, positional)


def refused(body: bytes | object, content_type: str | None = JSON, max_rows: int = 100,
            positional: tuple[str, ...] = ()) -> RequestError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(RequestError) as caught:
        parse_request(raw, content_type, max_rows, positional)
    return caught.value


# ---------------------------------------------------------------------------------------------------------------
# Content type


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/json; format=pandas-split",
                                          " application/json ;charset=UTF-8"])
def test_json_content_types_ignore_parameters_and_case(content_type: str) -> None:
    parsed = parse_request(b'{"dataframe_records": [{"a": 1}]}', content_type, 10)
    assert parsed == Parsed([{"a": 1}], None, False)


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/xml", "application/jsonx",
                                          "multipart/form-data; boundary=x", "x" * 500])
def test_other_content_types_are_415_naming_what_was_received(content_type: str | None) -> None:
    error = refused(b'{"inputs": []}', content_type)
    assert (error.status, error.error_code) == (415, "BAD_REQUEST")
    assert "application/json" in error.message and "text/csv" in error.message
    assert (content_type[:20] if content_type else "none") in error.message
    assert len(error.message) < 120


# ---------------------------------------------------------------------------------------------------------------
# JSON parsing


@pytest.mark.parametrize("body", [b"", b"{", b'{"inputs": [}', b"{'inputs': []}", b'{"inputs": []} x', b"\xff\xfe{}",
                                  b'{"inputs": ["\xc3\x28"]}'])
def test_invalid_json_or_utf8_is_400_with_the_reason(body: bytes) -> None:
    error = refused(body)
    assert (error.status, error.error_code) == (400, "MALFORMED_REQUEST")
    assert error.message.startswith("the body is not valid JSON: ")
    assert len(error.message) > len("the body is not valid JSON: ")


def test_an_integer_beyond_pythons_4300_digits_is_400() -> None:
    error = refused(b'{"inputs": [{"a": ' + b"7" * 5000 + b"}]}")
    assert (error.status, error.error_code) == (400, "MALFORMED_REQUEST")
    assert error.message.startswith("the body is not valid JSON: Exceeds the limit (4300 digits)")


def test_the_decoders_reason_is_cut_to_200_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    def long_reason(*args: object, **kwargs: object) -> None:
        raise json.JSONDecodeError("why " * 100, "doc", 0)

    monkeypatch.setattr(json, "loads", long_reason)
    error = refused(b"{}")
    assert error.message == "the body is not valid JSON: " + ("why " * 100 + ": line 1 column 1 (char 0)")[:200]


def test_a_utf8_byte_order_mark_is_allowed() -> None:
    assert parse_request(b'\xef\xbb\xbf{"inputs": [{"a": 1}]}', JSON, 10).records == [{"a": 1}]


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a": ' * 100_000,
                                  b'{"inputs": ' + b"[" * 2000 + b"]" * 2000 + b"}",
                                  b'{"inputs": [' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"]}"],
                         ids=["100,000 [", "100,000 objects", "2,000 lists in inputs", "5,000 objects in a row"])
def test_bodies_nested_beyond_the_decoder_are_400_not_a_recursion_error(body: bytes) -> None:
    error = refused(body)
    assert (error.status, error.error_code) == (400, "MALFORMED_REQUEST")
    assert "nested too deeply" in error.message


def nested(levels: int) -> list:
    value: list = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


def test_nesting_deeper_than_eight_levels_is_refused_after_parsing() -> None:
    # payload (1) -> inputs list (2) -> row object (3) -> 5 lists (4..8): legal; the caller refuses the value
    parsed = parse({"inputs": [{"a": nested(5)}]})
    assert parsed.records == [{"a": nested(5)}]
    error = refused({"inputs": [{"a": nested(6)}]})  # 9 levels
    assert (error.status, error.error_code) == (400, "MALFORMED_REQUEST")
    assert "nested too deeply" in error.message and "8 levels" in error.message
    assert "nested too deeply" in refused({"inputs": [{"a": nested(500)}]}).message  # within the decoder's limit
    assert "nested too deeply" in refused({"inputs": [], "params": {"p": nested(7)}}).message  # any key counts


def test_brackets_inside_strings_do_not_fool_the_depth_check() -> None:
    rows = [{"a": "[[[[{{{{[[[[", "b": "]]]]}}"}] * 3
    assert parse({"dataframe_records": rows}).records == rows
    error = refused({"dataframe_records": [*rows, {"a": nested(6)}]})
    assert "nested too deeply" in error.message
    # strings holding closing brackets cannot hide a deep value either
    error = refused({"dataframe_records": [{"a": "]]]]]]]]]]"}, {"b": nested(6)}, {"c": "[[[[[[[[[["}]})
    assert "nested too deeply" in error.message


def test_the_protocols_deepest_legal_shape_is_accepted() -> None:
    parsed = parse({"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}})
    assert parsed.records == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("body", [b'{"inputs": [{"a": 1, "a": 2}]}', b'{"inputs": [], "inputs": []}',
                                  b'{"dataframe_split": {"columns": ["a"], "data": [], "data": [[1]]}}',
                                  b'{"params": {"x": {"a": 1, "b": 2, "a": 3}}, "inputs": []}'])
def test_a_key_repeated_in_one_object_is_400_naming_it(body: bytes) -> None:
    error = refused(body)
    assert (error.status, error.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert error.message.endswith("appears twice in one object")


def test_the_repeated_key_is_named() -> None:
    assert refused(b'{"inputs": [{"a": 1, "a": 2}]}').message == "key 'a' appears twice in one object"
    assert refused(b'{"inputs": [], "inputs": []}').message == "key 'inputs' appears twice in one object"
    assert refused(b'{"inputs": [{"b": 1}, {"b": 2, "c": 0, "b": 2}]}').message == "key 'b' appears twice in one object"


def test_nan_is_a_missing_value() -> None:
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[NaN, 1.5], [2.0, NaN]]}}'
    assert parse_request(body, JSON, 10).records == [{"a": None, "b": 1.5}, {"a": 2.0, "b": None}]
    assert parse_request(b'{"inputs": {"a": [NaN, 1]}}', JSON, 10).records == [{"a": None}, {"a": 1}]


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity"])
def test_infinity_is_refused(constant: str) -> None:
    error = refused(f'{{"dataframe_records": [{{"a": {constant}}}]}}'.encode())
    assert (error.status, error.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert "Infinity is not a number a request may carry" in error.message
    assert error.message.startswith(constant)


def test_huge_integers_are_kept_for_the_caller_to_refuse() -> None:
    parsed = parse_request(b'{"inputs": [{"a": ' + str(10**400).encode() + b', "b": -' + str(10**400).encode()
                           + b"}]}", JSON, 10)
    assert parsed.records == [{"a": 10**400, "b": -(10**400)}]


def test_a_float_beyond_range_is_left_for_the_caller() -> None:
    # json reads 1e400 as inf; the caller's type check refuses non-finite numbers, as it refuses 10**400
    assert parse_request(b'{"inputs": [{"a": 1e400}]}', JSON, 10).records == [{"a": float("inf")}]


# ---------------------------------------------------------------------------------------------------------------
# The payload


@pytest.mark.parametrize(("payload", "got"), [
    ([{"a": 1}], "a list of 1 value"),
    ("inputs", "'inputs'"),
    (None, "null"),
    (3, "3"),
    ({}, "an empty object"),
    ({"rows": []}, "an object with keys 'rows'"),
    ({"inputs": [], "instances": []}, "an object with keys 'inputs', 'instances'"),
    ({"dataframe_split": {}, "dataframe_records": []}, "an object with keys 'dataframe_split', 'dataframe_records'"),
])
def test_the_payload_needs_exactly_one_input_format(payload: object, got: str) -> None:
    error = refused(payload)
    assert (error.status, error.error_code) == (400, "BAD_REQUEST")
    assert error.message == f"expected a JSON object with exactly one of {list(INPUT_FORMATS)}, got {got}"


def test_many_keys_are_not_all_listed() -> None:
    error = refused({f"key{i}": i for i in range(1000)})
    assert error.message.endswith("...") and "key999" not in error.message


def test_extra_keys_such_as_params_are_ignored() -> None:
    parsed = parse({"dataframe_records": [{"a": 1}], "params": {"threshold": 0.5}, "other": [1, 2]})
    assert parsed.records == [{"a": 1}]


# ---------------------------------------------------------------------------------------------------------------
# dataframe_split


def test_dataframe_split_gives_rows_and_columns_and_ignores_the_index() -> None:
    parsed = parse({"dataframe_split": {"index": [7, 8], "columns": ["a", "b"], "data": [[1, "x"], [2, None]]}})
    assert parsed == Parsed([{"a": 1, "b": "x"}, {"a": 2, "b": None}], ["a", "b"], False)


@pytest.mark.parametrize(("column", "shown"), [(["a"], "a list of 1 value"), ({"a": 1}, "an object of 1 field"),
                                               (5, "5"), (None, "null"), (True, "true")])
def test_a_column_that_is_not_a_name_is_400_naming_its_position(column: object, shown: str) -> None:
    error = refused({"dataframe_split": {"columns": ["a", "b", column], "data": []}})
    assert (error.status, error.error_code) == (400, "BAD_REQUEST")
    assert error.message == f"column 2 of dataframe_split is {shown}, not a name"


def test_a_column_listed_twice_is_400_naming_it() -> None:
    error = refused({"dataframe_split": {"columns": ["a", "b", "a"], "data": [[1, 2, 3]]}})
    assert (error.status, error.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert error.message == "column 'a' is listed twice in dataframe_split"


@pytest.mark.parametrize("split", [[], {"columns": ["a"]}, {"data": [[1]]}, {"columns": ["a"], "data": {"a": 1}},
                                   {"columns": "a", "data": [["x"]]}])
def test_dataframe_split_needs_columns_and_data(split: object) -> None:
    error = refused({"dataframe_split": split})
    assert (error.status, error.error_code) == (400, "BAD_REQUEST")
    assert "dataframe_split" in error.message


def test_rows_of_the_wrong_length_are_listed() -> None:
    error = refused({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [1], [1, 2, 3], "x", [3, 4]]}})
    assert (error.status, error.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert error.errors == [
        {"row": 1, "field": None, "problem": "expected a list of 2 values, got a list of 1 value"},
        {"row": 2, "field": None, "problem": "expected a list of 2 values, got a list of 3 values"},
        {"row": 3, "field": None, "problem": "expected a list of 2 values, got 'x'"},
    ]
    assert error.message == ("dataframe_split: each row must be a list of 2 values, one per column; 3 rows do not "
                             "(rows 1, 2, 3)")


def test_at_most_max_listed_errors_are_listed_and_the_message_counts_all() -> None:
    data = [[1]] * 80
    error = refused({"dataframe_split": {"columns": ["a", "b"], "data": data}})
    assert len(error.errors) == MAX_LISTED_ERRORS
    assert len(error.body()["errors"]) == MAX_LISTED_ERRORS
    assert "80 rows do not (rows 0, 1, 2, 3, 4 and 75 more)" in error.message


# ---------------------------------------------------------------------------------------------------------------
# dataframe_records


def test_dataframe_records_gives_the_rows_without_columns() -> None:
    rows = [{"a": 1, "b": "x"}, {"b": "y"}, {}]
    assert parse({"dataframe_records": rows}) == Parsed(rows, None, False)


def test_rows_that_are_not_objects_are_400_with_their_numbers() -> None:
    error = refused({"dataframe_records": [{"a": 1}, [1], {"a": 2}, "a", None]})
    assert (error.status, error.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert [e["row"] for e in error.errors] == [1, 3, 4]
    assert error.errors[0]["problem"] == "expected an object of fields, got a list of 1 value"
    assert error.message.endswith("3 rows do not (rows 1, 3, 4)")


@pytest.mark.parametrize("records", [{"a": [1]}, "rows", 3, None])
def test_dataframe_records_needs_a_list(records: object) -> None:
    error = refused({"dataframe_records": records})
    assert (error.status, error.error_code) == (400, "BAD_REQUEST")
    assert error.message.startswith("dataframe_records needs a list of objects, got ")


# ---------------------------------------------------------------------------------------------------------------
# inputs and instances


@pytest.mark.parametrize("key", ["inputs", "instances"])
def test_inputs_as_a_list_of_objects(key: str) -> None:
    assert parse({key: [{"a": 1}, {"a": 2}]}) == Parsed([{"a": 1}, {"a": 2}], None, False)
    error = refused({key: [{"a": 1}, [1]]})
    assert (error.status, error.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert error.errors[0]["row"] == 1


@pytest.mark.parametrize("key", ["inputs", "instances"])
def test_inputs_as_an_object_of_columns(key: str) -> None:
    parsed = parse({key: {"a": [1, 2], "b": ["x", None]}})
    assert parsed == Parsed([{"a": 1, "b": "x"}, {"a": 2, "b": None}], ["a", "b"], False)
    assert parse({key: {"a": [], "b": []}}) == Parsed([], ["a", "b"], False)
    assert parse({key: {}}) == Parsed([], [], False)


def test_a_single_object_of_scalars_is_one_row() -> None:
    assert parse({"inputs": {"a": 1, "b": "x", "c": None}}) == Parsed([{"a": 1, "b": "x", "c": None}],
                                                                      ["a", "b", "c"], False)


@pytest.mark.parametrize("columns", [{"a": [1, 2], "b": [1]}, {"a": [1, 2], "b": 3}, {"a": [1], "b": {"x": [1]}},
                                     {"a": [1], "": 3}, {"": 3, "a": [1]}])
def test_columns_of_unequal_length_or_kind_are_400(columns: dict) -> None:
    error = refused({"inputs": columns})
    assert (error.status, error.error_code) == (400, "BAD_REQUEST")
    assert error.message.startswith("inputs as columns needs")
    assert ("'b'" if "b" in columns else "column '' is 3") in error.message


def test_rows_by_position_follow_the_callers_columns() -> None:
    parsed = parse({"inputs": [[1, "x"], [2, None]]}, positional=("a", "b"))
    assert parsed == Parsed([{"a": 1, "b": "x"}, {"a": 2, "b": None}], ["a", "b"], False)
    assert parse({"instances": [[1, "x"]]}, positional=("a", "b")).records == [{"a": 1, "b": "x"}]


def test_a_row_by_position_of_the_wrong_length_names_the_row_count_and_order() -> None:
    error = refused({"inputs": [[1, 2, 3], [1, 2], {"a": 1}]}, positional=("a", "b", "c"))
    assert (error.status, error.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert error.message == ("inputs: each row must be a list of 3 values in the order ['a', 'b', 'c']; 2 rows do "
                             "not (rows 1, 2)")
    assert [e["problem"] for e in error.errors] == ["expected a list of 3 values, got a list of 2 values",
                                                    "expected a list of 3 values, got an object of 1 field"]
    assert [(e["row"], e["field"]) for e in error.errors] == [(1, None), (2, None)]


def test_rows_by_position_without_columns_need_named_columns() -> None:
    error = refused({"inputs": [[1, 2]]})
    assert (error.status, error.error_code) == (400, "BAD_REQUEST")
    assert error.message.startswith("this server needs named columns")


@pytest.mark.parametrize("inputs", [[1, 2, 3], ["a"], "abc", 3, None, True])
def test_inputs_that_are_neither_rows_nor_columns_are_400(inputs: object) -> None:
    error = refused({"inputs": inputs}, positional=("a",))
    assert (error.status, error.error_code) == (400, "BAD_REQUEST")
    assert error.message.startswith("inputs needs")


# ---------------------------------------------------------------------------------------------------------------
# CSV


def csv_parse(text: str | bytes, max_rows: int = 100, content_type: str = "text/csv") -> Parsed:
    return parse_request(text.encode() if isinstance(text, str) else text, content_type, max_rows)


def csv_refused(text: str | bytes, max_rows: int = 100) -> RequestError:
    return refused(text.encode() if isinstance(text, str) else text, "text/csv", max_rows)


def test_csv_rows_are_text_with_empty_fields_as_none() -> None:
    parsed = csv_parse("a,b,c\n1,x,\n2,,3.5\n", content_type="text/csv; charset=utf-8")
    assert parsed == Parsed([{"a": "1", "b": "x", "c": None}, {"a": "2", "b": None, "c": "3.5"}], ["a", "b", "c"],
                            True)


def test_csv_quoting_crlf_blank_lines_and_a_byte_order_mark() -> None:
    parsed = csv_parse(b'\xef\xbb\xbfa,b\r\n"x, y","line\r\none"\r\n\r\n"say ""hi""",2\r\n')
    assert parsed.columns == ["a", "b"]
    assert parsed.records == [{"a": "x, y", "b": "line\r\none"}, {"a": 'say "hi"', "b": "2"}]


def test_a_csv_header_alone_is_zero_rows() -> None:
    assert csv_parse("a,b\n") == Parsed([], ["a", "b"], True)


def test_a_csv_header_listing_a_column_twice_is_400_naming_it() -> None:
    error = csv_refused("a,b,a\n1,2,3\n")
    assert error.status == 400
    assert error.message == "column 'a' is listed twice in the CSV header"


def test_a_csv_row_with_the_wrong_number_of_fields_is_400_naming_it() -> None:
    error = csv_refused("a,b\n1,2\n1\n\n1,2,3\n")
    assert (error.status, error.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert error.errors == [{"row": 1, "field": None, "problem": "expected 2 fields, got 1 (line 3)"},
                            {"row": 2, "field": None, "problem": "expected 2 fields, got 3 (line 5)"}]
    assert "2 rows do not (rows 1, 2)" in error.message


@pytest.mark.parametrize(("body", "start"), [(b"a,b\n\xff,1\n", "the body is not valid UTF-8 text"),
                                             (b"", "the CSV body has no header line"),
                                             (b"\n\n", "the CSV body has no header line"),
                                             (b"a,,b\n1,2,3\n", "column 1 of the CSV header has no name"),
                                             (b'a\n"' + b"x" * 200_000 + b'"\n', "the body is not valid CSV")])
def test_unreadable_csv_is_400(body: bytes, start: str) -> None:
    error = csv_refused(body)
    assert error.status == 400
    assert error.message.startswith(start)


# ---------------------------------------------------------------------------------------------------------------
# Row limit and zero rows


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": ["a"], "data": [[i] for i in range(11)]}},
    {"dataframe_records": [{"a": i} for i in range(11)]},
    {"inputs": [{"a": i} for i in range(11)]},
    {"instances": {"a": list(range(11))}},
    {"inputs": [[i] for i in range(11)]},
])
def test_more_rows_than_the_limit_is_413(payload: object) -> None:
    error = refused(payload, max_rows=10, positional=("a",))
    assert (error.status, error.error_code) == (413, "RESOURCE_LIMIT_EXCEEDED")
    assert error.message == "11 rows in one request; the limit is 10"


def test_the_limit_is_checked_before_the_rows_are() -> None:
    error = refused({"dataframe_records": [1] * 11}, max_rows=10)  # bad rows, but too many first
    assert error.status == 413
    error = refused({"dataframe_split": {"columns": ["a", "a"], "data": [[1]] * 11}}, max_rows=10)
    assert error.status == 413


def test_more_csv_rows_than_the_limit_is_413() -> None:
    error = csv_refused("a\n" + "1\n" * 11, max_rows=10)
    assert (error.status, error.error_code, error.message) == (413, "RESOURCE_LIMIT_EXCEEDED",
                                                               "11 rows in one request; the limit is 10")
    assert len(csv_parse("a\n" + "1\n" * 10, max_rows=10).records) == 10


def test_rows_up_to_the_limit_are_fine_and_zero_rows_too() -> None:
    assert len(parse({"dataframe_records": [{"a": 1}] * 10}, max_rows=10).records) == 10
    assert parse({"dataframe_records": []}) == Parsed([], None, False)
    assert parse({"dataframe_split": {"columns": ["a"], "data": []}}) == Parsed([], ["a"], False)
    assert parse({"inputs": []}) == Parsed([], None, False)
    assert parse({"instances": []}, positional=("a",)) == Parsed([], None, False)


def test_lists_and_objects_inside_rows_are_left_for_the_caller() -> None:
    rows = [{"a": [1, 2], "b": {"c": {"d": [3]}}}]
    assert parse({"dataframe_records": rows}).records == rows
    assert parse({"dataframe_split": {"columns": ["a"], "data": [[{"x": [1]}]]}}).records == [{"a": {"x": [1]}}]


# ---------------------------------------------------------------------------------------------------------------
# RequestError and show


def test_request_error_body_is_mlflows() -> None:
    assert RequestError(400, "BAD_REQUEST", "no").body() == {"error_code": "BAD_REQUEST", "message": "no"}
    errors = [{"row": i, "field": None, "problem": "p"} for i in range(120)]
    error = RequestError(400, "INVALID_PARAMETER_VALUE", "many", errors)
    assert (error.status, error.error_code, error.message, str(error)) == (400, "INVALID_PARAMETER_VALUE", "many",
                                                                           "many")
    assert error.errors == errors
    assert error.body()["errors"] == errors[:MAX_LISTED_ERRORS]


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(("value", "shown"), [
    (None, "null"), (True, "true"), (False, "false"), (0, "0"), (-12, "-12"), (1.5, "1.5"),
    (float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity"), ("ab", "'ab'"),
    ("x" * 100, "'" + "x" * 36 + "..."), ([], "an empty list"), ([[1] * 10**5], "a list of 1 value"),
    ([1, 2, 3], "a list of 3 values"), ({}, "an empty object"), ({"a": {"b": []}, "c": 1}, "an object of 2 fields"),
    (10**36, str(10**36)), (b"abc", "a value of type bytes"), (Unprintable(), "a value of type Unprintable"),
])
def test_show(value: object, shown: str) -> None:
    assert show(value) == shown


def test_show_of_a_huge_integer_gives_its_first_digits_and_length() -> None:
    assert show(10**400) == "100000000000000000... (401 digits)"
    assert show(-(10**400) - 1) == "-100000000000000000... (401 digits)"
    assert show(123456789 * 10**40) == "123456789000000000... (49 digits)"
    assert show(2**121) == "265845599156983174... (37 digits)"


@pytest.mark.parametrize(("value", "shown"), [
    (10**5000, "100000000000000000... (5001 digits)"),  # beyond str()'s 4,300 digits
    (-(10**20000) + 1, "-999999999999999999... (20000 digits)"),
    (2**200_000, "an integer of ~60206 digits"),  # no request holds it: not divided
    (-(2**200_000), "a negative integer of ~60206 digits"),
], ids=["10**5000", "-(10**20000)+1", "2**200_000", "-(2**200_000)"])
def test_show_of_an_integer_beyond_str_never_raises(value: int, shown: str) -> None:
    assert show(value) == shown


def test_show_never_exceeds_40_characters() -> None:
    for value in ["\x00" * 50, "\ud800" * 30, "é" * 100, 1e300, -1.2345678901234567e-300, 2**120, -(2**120),
                  {str(i): i for i in range(10**4)}]:
        assert len(show(value)) <= 40


# ---------------------------------------------------------------------------------------------------------------
# Hostile bodies: a RequestError or rows, never anything else


def test_random_bodies_never_raise_anything_but_request_error() -> None:
    rng = random.Random(7)
    pieces = [b"{", b"}", b"[", b"]", b'"inputs"', b'"dataframe_split"', b'"columns"', b'"data"', b":", b",", b"1",
              b"NaN", b"Infinity", b"null", b'"a"', b"\xff", b"1e400", b"-", b".", b" ", b"\n", b'"', b"\\"]
    for _ in range(3000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        for content_type in (JSON, "text/csv"):
            try:
                parsed = parse_request(body, content_type, 5, ("a", "b"))
            except RequestError as error:
                assert 400 <= error.status < 500
            else:
                assert isinstance(parsed.records, list)
