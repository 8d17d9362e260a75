"""The filter language (hrem.store.where) against a naive reference: random and hand-written filters are
built as small trees, rendered to text, parsed, and evaluated on a real Parquet file; the rows must equal
the ones a row-by-row Python evaluation of the same tree (SQL three-valued logic) keeps. Then the error
positions, hostile input, the old pyarrow text, and the three front doors: VectorSearcher / Searcher,
`hrem search --filter` and `GET /api/search?filter=`."""
from __future__ import annotations

import builtins
import json
import os
import random
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from hrem.store import FilterError, parse_where
from hrem.store.where_legacy import translate

# -- the table and the reference evaluator -----------------------------------------------------------
COLUMNS = {   # name -> (kind, values); None = null
    "split": ("str", ["test", "train", "val", None, "it's", "Test", "test", "", "train", None, "ü-ber", "test"]),
    "width": ("int", [100, 50, 200, None, 0, -5, 100, 7, 99, 100, None, 300]),
    "score": ("float", [0.5, 1.5, None, -2.25, 1e3, 0.0, 0.5, None, 3.75, -0.5, 2.0, 1.5]),
    "flag": ("bool", [True, False, None, True, False, True, None, False, True, True, False, None]),
    "odd name": ("str", ['say "hi"', "x", None, "y", "x", "x", "y", None, "z", "x", "y", "z"]),
    "and": ("int", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, None]),      # a keyword as a column name
    "größe": ("int", [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, None]),
}
ROWS = [{name: values[i] for name, (_, values) in COLUMNS.items()} for i in range(12)]
TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
CMP = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<>": lambda a, b: a != b, "<": lambda a, b: a < b,
       "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    columns = {"row": pa.array(range(12), pa.int64())}
    columns.update({name: pa.array(values, TYPES[kind]) for name, (kind, values) in COLUMNS.items()})
    path = tmp_path_factory.mktemp("where") / "rows.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def evaluate(node, row):
    """A tree on one row: True, False or None (unknown), as SQL's WHERE reads it."""
    kind = node[0]
    if kind == "cmp":
        value = row[node[1]]
        return None if value is None else CMP[node[2]](value, node[3])
    if kind == "in":
        value = row[node[1]]
        found = None if value is None else value in node[2]
        return found if found is None or not node[3] else not found
    if kind == "null":
        return (row[node[1]] is not None) if node[2] else (row[node[1]] is None)
    if kind == "not":
        inner = evaluate(node[1], row)
        return None if inner is None else not inner
    left, right = evaluate(node[1], row), evaluate(node[2], row)
    if kind == "and":
        return False if False in (left, right) else (None if None in (left, right) else True)
    return True if True in (left, right) else (None if None in (left, right) else False)


def reference_rows(node) -> list[int]:
    return [i for i, row in enumerate(ROWS) if evaluate(node, row) is True]


def parsed_rows(text: str, path) -> list[int]:
    dataset = ds.dataset(path, format="parquet")
    expression = parse_where(text, dataset.schema)
    return dataset.to_table(columns=["row"], filter=expression).column("row").to_pylist()


# -- rendering trees to text (precedence decides where parentheses are needed) ------------------------
PRECEDENCE = {"or": 1, "and": 2, "not": 3}


def render(node, rng, needed=0) -> str:
    kind = node[0]
    if kind in ("and", "or"):
        own = PRECEDENCE[kind]
        text = f"{render(node[1], rng, own)} {_keyword(kind, rng)} {render(node[2], rng, own + 1)}"
    elif kind == "not":
        own = PRECEDENCE["not"]
        text = f"{_keyword('not', rng)} {render(node[1], rng, own)}"
    else:
        own, text = 4, _predicate(node, rng)
    if own < needed or rng.random() < 0.15:
        return f"({rng.choice(['', ' '])}{text}{rng.choice(['', ' ', chr(10)])})"
    return text


def _keyword(word: str, rng) -> str:
    return rng.choice([word, word.upper(), word.capitalize()])


def _column(name: str, rng) -> str:
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name not in ("and",)
    return name if plain and rng.random() < 0.8 else '"' + name.replace('"', '""') + '"'


def _literal(value, rng) -> str:
    if isinstance(value, bool):
        return _keyword("true" if value else "false", rng)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float):
        return rng.choice([repr(value), f"{value:e}"])
    return rng.choice([str(value), f"+{value}" if value >= 0 else str(value)])


def _predicate(node, rng) -> str:
    column = _column(node[1], rng)
    if node[0] == "cmp":
        return f"{column} {node[2]} {_literal(node[3], rng)}"
    if node[0] == "null":
        return f"{column} {_keyword('is', rng)}{' not' if node[2] else ''} {_keyword('null', rng)}"
    values = ", ".join(_literal(v, rng) for v in node[2])
    return f"{column}{' not' if node[3] else ''} {_keyword('in', rng)} ({values})"


def random_literal(kind: str, rng):
    if kind == "str":
        return rng.choice(["test", "train", "it's", "", "ü-ber", "x", "zzz", 'say "hi"', "Test"])
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "float" or rng.random() < 0.2:
        return rng.choice([0.5, -2.25, 1.5, 2.0, 1e3, 1.25, 99.5])
    return rng.choice([100, 50, 0, -5, 7, 300, 3, 1, 5, 99, 1000])


def random_predicate(rng):
    name = rng.choice(list(COLUMNS))
    kind = COLUMNS[name][0]
    choice = rng.random()
    if choice < 0.15:
        return ("null", name, rng.random() < 0.5)
    if choice < 0.35:
        return ("in", name, [random_literal(kind, rng) for _ in range(rng.randint(1, 4))], rng.random() < 0.5)
    ops = ["=", "!=", "<>"] if kind == "bool" else list(CMP)
    return ("cmp", name, rng.choice(ops), random_literal(kind, rng))


def random_tree(rng, depth=0):
    if depth >= 4 or rng.random() < 0.3:
        return random_predicate(rng)
    kind = rng.choice(["and", "or", "not", "and", "or"])
    if kind == "not":
        return ("not", random_tree(rng, depth + 1))
    return (kind, random_tree(rng, depth + 1), random_tree(rng, depth + 1))


def test_random_filters_equal_the_row_by_row_reference(table_path):
    rng = random.Random(15)
    for _ in range(400):
        tree = random_tree(rng)
        text = render(tree, rng)
        assert parsed_rows(text, table_path) == reference_rows(tree), text


# -- hand-written cases: precedence, nulls, lists, escapes, names -------------------------------------
A, B, C = ("cmp", "width", ">", 60), ("cmp", "split", "=", "test"), ("cmp", "score", "<", 1.0)
CASES = [
    ("width > 60 or split = 'test' and score < 1.0", ("or", A, ("and", B, C))),        # and before or
    ("(width > 60 or split = 'test') and score < 1.0", ("and", ("or", A, B), C)),
    ("not width > 60 and split = 'test'", ("and", ("not", A), B)),                     # not before and
    ("not (width > 60 and split = 'test')", ("not", ("and", A, B))),
    ("not not width > 60", ("not", ("not", A))),
    ("width > 60 or not split = 'test' and score < 1.0", ("or", A, ("and", ("not", B), C))),
    ("width != 100", ("cmp", "width", "!=", 100)),                                      # null rows: unknown
    ("not width = 100", ("not", ("cmp", "width", "=", 100))),                           # still unknown
    ("width is null or width < 0", ("or", ("null", "width", False), ("cmp", "width", "<", 0))),
    ("split is not null and split <> ''", ("and", ("null", "split", True), ("cmp", "split", "!=", ""))),
    ("width in (100, 7)", ("in", "width", [100, 7], False)),
    ("width not in (100, 7)", ("in", "width", [100, 7], True)),                        # nulls excluded, as SQL
    ("not width in (100, 7)", ("in", "width", [100, 7], True)),
    ("width in (99.5, 100)", ("in", "width", [99.5, 100], False)),
    ("split = 'it''s'", ("cmp", "split", "=", "it's")),                                 # '' escapes a quote
    ("split = ''", ("cmp", "split", "=", "")),
    ("split = 'ü-ber'", ("cmp", "split", "=", "ü-ber")),
    ("split > 'test'", ("cmp", "split", ">", "test")),                                  # byte order = code points
    ("SPLIT = 'test'", None),                                                           # column names are exact
    ("split = 'TEST'", ("cmp", "split", "=", "TEST")),                                  # values are exact
    ('"odd name" = \'say "hi"\'', ("cmp", "odd name", "=", 'say "hi"')),
    ('"and" >= 10 AnD "größe" = 5', ("and", ("cmp", "and", ">=", 10), ("cmp", "größe", "=", 5))),
    ("flag = true", ("cmp", "flag", "=", True)),
    ("flag <> FALSE", ("cmp", "flag", "!=", False)),
    ("score >= -2.25e0 and score < 1E3", ("and", ("cmp", "score", ">=", -2.25), ("cmp", "score", "<", 1000.0))),
    ("width>=+100", ("cmp", "width", ">=", 100)),
    ("\twidth\n>=\r\n100 ", ("cmp", "width", ">=", 100)),
]


@pytest.mark.parametrize(("text", "tree"), [c for c in CASES if c[1] is not None], ids=lambda v: str(v)[:50])
def test_hand_written_filters_equal_the_reference(table_path, text, tree):
    assert parsed_rows(text, table_path) == reference_rows(tree)


def test_column_names_are_case_sensitive(table_path):
    with pytest.raises(FilterError, match="unknown column 'SPLIT'.*did you mean 'split'"):
        parsed_rows("SPLIT = 'test'", table_path)


def test_without_a_schema_any_column_name_parses():
    expression = parse_where("anything = 'x' and \"other col\" in (1, 2)")
    assert isinstance(expression, pc.Expression)


# -- errors point at the column -----------------------------------------------------------------------
SCHEMA = pa.schema([(name, TYPES[kind]) for name, (kind, _) in COLUMNS.items()])
ERRORS = [
    ("split = 'test' and width >= ", 29, "expected a value after '>='"),
    ("split = ", 9, "expected a value after '='"),
    ("split == 'test'", 7, "write '='"),
    ("split = 'test' && width > 1", 16, "write 'and'"),
    ("width > 1 | width < 0", 11, "write 'or'"),
    ("~ width > 1", 1, "write 'not'"),
    ('split = "test"', 9, "string values take single quotes: 'test'"),
    ("split = test", 9, "string values take single quotes"),
    ("width > 'a'", 9, "column 'width' holds number values (int64), found the string 'a'"),
    ("flag = 'yes'", 8, "holds boolean values"),
    ("split = 3", 9, "holds string values"),
    ("widht > 3", 1, "unknown column 'widht' (did you mean 'width'?); available: split, width, score, flag"),
    ("(width > 1", 11, "expected ')' to close the '(' at column 1"),
    ("width > 1)", 10, "expected 'and', 'or' or the end"),
    ("width > 1 split = 'x'", 11, "expected 'and', 'or' or the end, found 'split'"),
    ("width in ()", 11, "expected a value in the list"),
    ("width in (1, 'a')", 14, "holds number values"),
    ("width in (1 2)", 13, "expected ',' or ')'"),
    ("width in 1", 10, "expected '(' to start the list"),
    ("width is 1", 10, "expected 'null' after 'is'"),
    ("width is not 1", 14, "expected 'null' after 'is not'"),
    ("width not 1", 11, "expected 'in' after 'not'"),
    ("width = null", 9, "'column is null'"),
    ("width", 6, "expected a comparison (= != <> < <= > >=), 'in', 'not in' or 'is' after column 'width'"),
    ("1 = width", 1, "expected a column name, found '1'"),
    ("", 1, "expected a condition, found nothing"),
    ("split = 'x' AND", 16, "expected a column name, found the end of the filter"),
    ("width > 99999999999999999999", 9, "64-bit range"),
    ("score >= 1e400", 10, "too large"),
    ("width > 10abc", 9, "expected a number, found '10a'"),
    ("split = 'abc", 9, "unterminated string: expected a closing '"),
    ('"split = 1', 1, "unterminated quoted column name"),
    ('"" = 1', 1, "expected a column name inside the double quotes"),
    ("größe = 1", 3, "unexpected character 'ö'; column names with other characters go in double quotes"),
    ("width = [1]", 9, "lists are written in (...)"),
]


@pytest.mark.parametrize(("text", "column", "fragment"), ERRORS, ids=[e[0] or "empty" for e in ERRORS])
def test_errors_name_the_problem_and_the_column(text, column, fragment):
    with pytest.raises(FilterError) as caught:
        parse_where(text, SCHEMA)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.column == column and error.position == column - 1, str(error)
    message = str(error)
    assert message.startswith("filter: ") and fragment in message, message
    assert f"at column {column}: {text[:column - 1]}^{text[column - 1:]}" in message, message


def test_list_values_must_be_of_one_kind_without_a_schema():
    with pytest.raises(FilterError, match=r"one kind \(number\), found the string 'a' at column 14"):
        parse_where("width in (1, 'a')")


def test_long_filters_show_a_window_around_the_mistake():
    text = " or ".join(f"width = {i}" for i in range(40)) + " or width >"
    with pytest.raises(FilterError) as caught:
        parse_where(text)
    message = str(caught.value)
    assert caught.value.column == len(text) + 1 and message.endswith("or width >^")
    assert len(message) < 200 and ": ..." in message      # a window, not the whole filter


# -- hostile input --------------------------------------------------------------------------------------
HOSTILE = [
    "__import__('os').system('touch {sentinel}')",
    "().__class__.__bases__[0].__subclasses__()",
    "width > 1 and __import__('os').system('touch {sentinel}')",
    "split = 'x' or exec('open(\"{sentinel}\", \"w\")')",
    "eval(\"__import__('os').system('touch {sentinel}')\")",
    "lambda: 1",
    "[x for x in ()]",
    "width = 1; import os",
    "split = 'a\x00b'",
    "\x00",
    "split = 'x'\x1b[2J",
    "split = 'unterminated",
    "split = 'ok' and \"unterminated = 1",
    "width > 1 and (" * 20,
    "(" * 400 + "width = 1" + ")" * 400,
    "not " * 200 + "width = 1",
    "x" * 1001,
    "(" * 100_000,
    "split = '" + "a" * 2_000_000 + "'",
    "\u202e width = 1",                     # right-to-left override
    "width = ١٢",                           # Arabic-Indic digits are not numbers here
    "width\u00a0= 1",                       # no-break space
    "split = 'x' --",
    "split = 'x' /* */",
]


@pytest.mark.parametrize("template", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_is_refused_and_nothing_runs(template, tmp_path, monkeypatch):
    sentinel = tmp_path / "ran"
    text = template.replace("{sentinel}", str(sentinel))

    def forbidden(*args, **kwargs):
        raise AssertionError(f"the filter ran code: {args!r:.80}")
    imported, real_import = [], builtins.__import__

    def recording_import(name, *args, **kwargs):   # pyarrow may import its own helpers lazily: allowed
        imported.append(name)
        return real_import(name, *args, **kwargs)
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    monkeypatch.setattr(builtins, "__import__", recording_import)
    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    try:
        with pytest.raises(FilterError) as caught:
            parse_where(text, SCHEMA)
    finally:
        monkeypatch.undo()
    assert not {"os", "subprocess", "sys", "importlib", "shutil", "builtins"} & set(imported), imported
    message = str(caught.value)
    assert message.startswith("filter: ") and len(message) < 600
    assert "\x00" not in message and "\x1b" not in message       # control characters are escaped
    assert not sentinel.exists()


def test_nesting_is_refused_at_the_limit_not_by_recursion():
    from hrem.store.where import MAX_DEPTH

    assert isinstance(parse_where("(" * MAX_DEPTH + "width = 1" + ")" * MAX_DEPTH), pc.Expression)
    assert isinstance(parse_where("not " * MAX_DEPTH + "width = 1"), pc.Expression)
    with pytest.raises(FilterError, match=f"nesting deeper than {MAX_DEPTH} levels") as caught:
        parse_where("(" * (MAX_DEPTH + 1) + "width = 1" + ")" * (MAX_DEPTH + 1))
    assert caught.value.column == MAX_DEPTH + 1
    with pytest.raises(FilterError, match="expected at most 1000 characters, found 1001"):
        parse_where("x" * 1001)
    with pytest.raises(FilterError, match="expected at most 20 characters"):
        parse_where("width = 1 and width = 2", max_chars=20)


def test_non_text_is_refused():
    with pytest.raises(FilterError, match="expected the filter as text, found bytes"):
        parse_where(b"width = 1")


def test_the_module_imports_without_torch():
    code = "import sys, hrem.store.where; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_eval_of_user_text_in_the_package():
    root = __import__("pathlib").Path(__file__).resolve().parent.parent / "hrem"
    found = [f"{p}:{n}" for p in root.rglob("*.py") for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"(?<![.\w])(eval|exec)\s*\(|literal_eval", line)]
    assert found == []


# -- the old pyarrow text -------------------------------------------------------------------------------
LEGACY = [
    ("pc.field('split') == 'test'", pc.field("split") == "test"),
    ("(pc.field('split') == 'test') & (pc.field('width') >= 100)",
     (pc.field("split") == "test") & (pc.field("width") >= 100)),
    ('(ds.field("width") > 60) | ~(pc.field("flag") == True)', (pc.field("width") > 60) | ~(pc.field("flag") == True)),
    ("pc.field('split').isin(['test', 'val'])", pc.field("split").isin(["test", "val"])),
    ("field('score').is_null()", pc.field("score").is_null()),
    ("pc.field('odd name') == 'x'", pc.field("odd name") == "x"),
]


@pytest.mark.parametrize(("old", "expression"), LEGACY, ids=[o for o, _ in LEGACY])
def test_old_pyarrow_text_is_not_run_and_the_new_spelling_is_shown(table_path, old, expression, monkeypatch):
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: pytest.fail("eval was called"))
    with pytest.raises(FilterError, match="pyarrow expressions are no longer accepted") as caught:
        parse_where(old, SCHEMA)
    suggestion = re.search(r'write "(.*)" instead', str(caught.value)).group(1)
    assert suggestion == translate(old)
    rows = ds.dataset(table_path, format="parquet").to_table(filter=expression).column("row").to_pylist()
    assert parsed_rows(suggestion, table_path) == rows


def test_old_text_without_a_clean_rewrite_still_gets_an_example():
    with pytest.raises(FilterError, match="no longer accepted.*write e.g. \"split = 'test' and width >= 100\""):
        parse_where("pc.field('a').cast('int8') > 1")


# -- the front doors: VectorSearcher / select_ids, Searcher, CLI, HTTP ----------------------------------
@pytest.fixture(scope="module")
def vector_corpus(tmp_path_factory):
    """40 random vectors with split/width metadata in a real embeddings dir, and a Flat index (no torch)."""
    from hrem.index import build_index
    from hrem.store import build_table, new_manifest, write_manifest, write_shard

    root = tmp_path_factory.mktemp("where_index")
    rng = np.random.default_rng(0)
    ids = 500 + 7 * np.arange(40)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    split = np.array(["test", "train", "val", "test"])[np.arange(40) % 4]
    width = pa.array([None if i % 9 == 0 else 20 * i for i in range(40)], pa.int64())
    table = build_table(ids, [f"{i}.png" for i in ids], vectors, metadata={"split": split, "width": width})
    manifest = new_manifest("fp", 8).with_shard("images", write_shard(root / "emb", "images", 0, table))
    write_manifest(root / "emb", manifest)
    build_index(root / "emb", root / "index", factory="Flat", tune_queries=10)
    rows = [{"split": s, "width": w} for s, w in zip(split.tolist(), width.to_pylist())]
    return {"root": root, "ids": ids, "vectors": vectors, "rows": rows}


def _brute_force(query, vectors, ids, allowed, k):
    keep = np.asarray(allowed, bool)
    scores = vectors[keep] @ query
    return ids[keep][np.argsort(-scores, kind="stable")[:k]].tolist()


def test_vector_searcher_takes_filter_text(vector_corpus):
    from hrem.index import VectorSearcher
    from hrem.store import select_ids

    searcher = VectorSearcher(vector_corpus["root"] / "index")
    tree = ("and", ("cmp", "split", "=", "test"), ("not", ("cmp", "width", "<", 300)))
    allowed = [evaluate(tree, row) is True for row in vector_corpus["rows"]]
    query = vector_corpus["vectors"][3] + 0.1
    _, found = searcher.search(query[None], 5, filter="split = 'test' and not width < 300")
    assert found[0].tolist() == _brute_force(query, vector_corpus["vectors"], vector_corpus["ids"], allowed, 5)
    same = searcher.search(query[None], 5, filter=(pc.field("split") == "test") & ~(pc.field("width") < 300))[1]
    assert same.tolist() == found.tolist()
    selected = select_ids(vector_corpus["root"] / "emb", "images", "split = 'test' and not width < 300")
    assert selected.tolist() == sorted(vector_corpus["ids"][allowed].tolist())


def test_vector_searcher_checks_columns_without_the_embedding(vector_corpus):
    from hrem.index import VectorSearcher

    searcher = VectorSearcher(vector_corpus["root"] / "index")
    with pytest.raises(FilterError, match=r"unknown column 'embedding'; available: id, key, split, width at"):
        searcher.search(vector_corpus["vectors"][:1], 3, filter="embedding is null")
    with pytest.raises(FilterError, match="column 'width' holds number values"):
        searcher.search(vector_corpus["vectors"][:1], 3, filter="width = 'wide'")


@pytest.fixture(scope="module")
def text_corpus(tmp_path_factory):
    """A listing of 16 PNGs with split / width / note metadata, embedded by a tiny random model through
    `hrem embed` and indexed by `hrem index` (images)."""
    from test_embed_support import make_listing, make_run

    from hrem.cli import main

    root = tmp_path_factory.mktemp("where_cli")
    listing = make_listing(root / "data", 16, fmt="parquet")
    table = pq.read_table(listing)
    table = table.append_column("split", pa.array([["test", "train", "val", None][i % 4] for i in range(16)]))
    table = table.append_column("width", pa.array([None if i == 5 else 40 + 10 * i for i in range(16)], pa.int64()))
    table = table.append_column("note", pa.array(["it's" if i % 3 == 0 else "plain" for i in range(16)]))
    pq.write_table(table, listing)
    run = make_run(root / "run")
    assert main(["embed", "--data", str(listing), "--model", str(run), "--out", str(root / "emb"), "--workers", "0",
                 "--device", "cpu", "--no-progress"]) == 0
    assert main(["index", "--emb", str(root / "emb"), "--out", str(root / "index" / "images"),
                 "--modality", "images"]) == 0
    images = pa.concat_tables([pq.read_table(p) for p in sorted((root / "emb" / "images").glob("*.parquet"))])
    return {"index": root / "index", "images": images}


def _text_reference(corpus, searcher, query, tree, k):
    images = corpus["images"]
    rows = images.select(["split", "width", "note"]).to_pylist()
    vectors = np.stack(images.column("embedding").to_numpy(zero_copy_only=False))
    allowed = [evaluate(tree, row) is True for row in rows]
    ids = np.asarray(images.column("id").to_pylist())
    return _brute_force(searcher.encode_text([query])[0], vectors, ids, allowed, k)


TEXT_FILTER = "split = 'test' or note = 'it''s' and width >= 100"
TEXT_TREE = ("or", ("cmp", "split", "=", "test"),
             ("and", ("cmp", "note", "=", "it's"), ("cmp", "width", ">=", 100)))


@pytest.fixture(scope="module")
def text_searcher(text_corpus):
    from hrem.pipeline.search import Searcher

    return Searcher.load(text_corpus["index"])


def test_searcher_search_text_takes_a_string_or_an_expression(text_corpus, text_searcher):
    expected = _text_reference(text_corpus, text_searcher, "a red circle", TEXT_TREE, 4)
    hits = text_searcher.search_text(["a red circle"], k=4, filter=TEXT_FILTER)[0]
    assert [h.id for h in hits] == expected and len(expected) == 4
    expression = (pc.field("split") == "test") | ((pc.field("note") == "it's") & (pc.field("width") >= 100))
    assert [h.id for h in text_searcher.search_text(["a red circle"], k=4, filter=expression)[0]] == expected


def test_cli_search_with_a_filter(text_corpus, text_searcher, capsys):
    from hrem.cli import main

    assert main(["search", "--index", str(text_corpus["index"]), "a red circle", "-k", "4", "--json",
                 "--device", "cpu", "--filter", TEXT_FILTER]) == 0
    results = json.loads(capsys.readouterr().out)[0]["results"]
    assert [r["id"] for r in results] == _text_reference(text_corpus, text_searcher, "a red circle", TEXT_TREE, 4)
    assert all(evaluate(TEXT_TREE, {c: r[c] for c in ("split", "width", "note")}) for r in results)


@pytest.mark.parametrize(("text", "fragment"), [
    ("split = 'test' and width >= ", "expected a value after '>=', found the end of the filter at column 29"),
    ("colour = 'red'", "unknown column 'colour' (did you mean 'color'?); available: id, key, color, split"),
    ("pc.field('split') == 'test'", "write \"split = 'test'\" instead"),
])
def test_cli_search_reports_a_bad_filter(text_corpus, capsys, text, fragment):
    from hrem.cli import main

    code = main(["search", "--index", str(text_corpus["index"]), "a red circle", "--device", "cpu",
                 "--filter", text])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]      # earlier lines are the log
    assert code == 1 and last.startswith("hrem search: error: filter: ") and fragment in last, err
    assert "Traceback" not in err


def test_cli_help_describes_the_filter_language(capsys):
    from hrem.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "split = 'test' and width >= 100" in out and "docs/filters.md" in out and "pyarrow" not in out


@pytest.fixture(scope="module")
def client(text_corpus):
    from fastapi.testclient import TestClient

    from hrem.cli.serve import create_app
    from hrem.serve.limits import ServeLimits

    app = create_app(text_corpus["index"], None, ServeLimits(max_k=20, max_filter_chars=200))
    with TestClient(app) as test_client:
        yield test_client


def test_http_search_with_a_filter(client, text_corpus, text_searcher):
    body = client.get("/api/search", params={"q": "a red circle", "k": 4, "filter": TEXT_FILTER}).json()
    expected = _text_reference(text_corpus, text_searcher, "a red circle", TEXT_TREE, 4)
    assert [r["id"] for r in body["results"]] == expected and body["filter"] == TEXT_FILTER
    blank = client.get("/api/search", params={"q": "a red circle", "k": 4, "filter": "  "}).json()
    plain = client.get("/api/search", params={"q": "a red circle", "k": 4}).json()
    assert [r["id"] for r in blank["results"]] == [r["id"] for r in plain["results"]]   # blank = no filter


@pytest.mark.parametrize(("text", "fragment"), [
    ("split = 'test' and width >= ", ("filter: expected a value after '>=', found the end of the filter at "
                                      "column 29: split = 'test' and width >= ^")),
    ("widht > 3", "unknown column 'widht' (did you mean 'width'?); available: id, key, color, split, width, note"),
    ("width > 'wide'", "column 'width' holds number values"),
    ("__import__('os').system('id')", "unexpected character '.'"),
    ("pc.field('split') == 'test'", "write \"split = 'test'\" instead"),
    ("x" * 201, "filter: expected at most 200 characters, found 201"),
    ("split = 'a\x00'", "control character U+0000"),
])
def test_http_bad_filter_is_400_with_the_parser_message(client, text, fragment):
    response = client.get("/api/search", params={"q": "a red circle", "filter": text})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == 400 and fragment in body["error"], body
    assert "Traceback" not in response.text and "\x00" not in response.text
