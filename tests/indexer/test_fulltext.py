"""The tantivy full-text index and the identifier tokens it shares with query analysis."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.identifiers import code_tokens, expand_identifiers, split_identifier
from indexer.models import ADMINS, PUBLIC, Access, Chunk, Principal
from indexer.stores import LexicalQuery, SearchFilter, StoreError
from indexer.stores.fulltext import FieldBoosts, TantivyIndex, code_analyzer, shard_dirname

REPO = Path(__file__).resolve().parents[2]
VOCAB = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"]
USERS = [f"u{i}" for i in range(8)]
GROUPS = [f"g{i}" for i in range(6)]
ALL_PRINCIPALS = [f"user:{u}" for u in USERS] + [f"group:{g}" for g in GROUPS] + [PUBLIC]


def make_chunk(n: int, content: str, acl: tuple[str, ...] | list[str] = (PUBLIC,), source: str = "repo",
               path: str = "src/a.py", symbol: str = "", kind: str = "code", language: str = "python") -> Chunk:
    return Chunk(doc_id=f"{source}:{path}", source=source, path=path, ordinal=n, start_line=1, end_line=2,
                 content=content, symbol=symbol, kind=kind, language=language, acl=tuple(Access.of(*acl).acl()))


def words(*terms: str) -> LexicalQuery:
    return LexicalQuery(terms=tuple((t, 1.0) for t in terms))


def public(**scope) -> SearchFilter:
    return SearchFilter(principals=(PUBLIC,), **scope)


@pytest.fixture
def index(tmp_path):
    ix = TantivyIndex(tmp_path / "ft")
    yield ix
    ix.close()


# -- identifiers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("identifier,parts", [
    ("parseHTTPResponse_v2", ["parse", "http", "response", "v2"]),
    ("getUser", ["get", "user"]),
    ("get_user", ["get", "user"]),
    ("GetUser", ["get", "user"]),
    ("HTTPServer", ["http", "server"]),
    ("http2Server", ["http2", "server"]),
    ("IOError", ["io", "error"]),
    ("MAX_RETRY_COUNT", ["max", "retry", "count"]),
    ("__init__", ["init"]),
    ("x86_64", ["x86", "64"]),
    ("kebab-case-name", ["kebab", "case", "name"]),
    ("simple", ["simple"]),
    ("", []),
])
def test_split_identifier(identifier, parts):
    assert split_identifier(identifier) == parts


@pytest.mark.parametrize("text,tokens", [
    ("getUser(id)", ["getuser", "get", "user", "id"]),
    ("parse_http_response", ["parsehttpresponse", "parse", "http", "response"]),
    ("self.cache = None", ["self", "cache", "none"]),
    ("src/HttpClient.py", ["src", "httpclient", "http", "client", "py"]),
    ("Café crème", ["café", "crème"]),
])
def test_code_tokens(text, tokens):
    assert code_tokens(text) == tokens


@pytest.mark.parametrize("text", [
    "def parseHTTPResponse_v2(self, raw: bytes) -> HttpResponse:  # see RFC-7230",
    "x" * 39 + " " + "y" * 40 + " " + "camelCase" * 6,
    "ÉCOLE naïveCase ünïcode_snake 数据库 connectionPool",
    "",
])
def test_code_tokens_match_what_tantivy_indexes(text):
    assert code_analyzer().analyze(expand_identifiers(text)) == code_tokens(text)


# -- permissions ---------------------------------------------------------------------------------

def random_principals(rng: random.Random) -> tuple[str, ...]:
    if rng.random() < 0.1:
        return ()
    caller = Principal(user=rng.choice([*USERS, "stranger"]), groups=frozenset(rng.sample(GROUPS, rng.randint(0, 2))),
                       admin=rng.random() < 0.1)
    principals = caller.principals()
    if rng.random() < 0.3:
        principals = [p for p in principals if p != PUBLIC]
    return tuple(principals)


@pytest.mark.parametrize("seed", [1, 2])
def test_randomized_permissions_are_enforced_inside_the_query(index, seed):
    rng = random.Random(seed)
    chunks = []
    for i in range(300):
        text = " ".join(rng.choices(VOCAB, k=rng.randint(3, 12)))
        acl = rng.sample(ALL_PRINCIPALS, rng.choice([0, 1, 1, 2, 3]))
        chunks.append(make_chunk(i, text, acl, source=rng.choice(["alpha", "beta", "gamma"])))
    index.upsert(chunks)
    index.commit()
    for _ in range(40):
        principals = random_principals(rng)
        terms = rng.sample(VOCAB, rng.randint(1, 3))
        flt = SearchFilter(principals=principals)
        expected = {c.id for c in chunks
                    if set(c.acl) & set(principals) and set(terms) & set(c.content.split())}
        found = index.search(words(*terms), flt, limit=400)
        assert {h.chunk_id for h in found} == expected
        assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)
        top = index.search(words(*terms), flt, limit=5)
        assert len(top) == min(5, len(expected)) and {h.chunk_id for h in top} <= expected


@pytest.mark.parametrize("seed", [3, 4])
def test_restricted_chunks_of_stale_sources_are_left_out_inside_the_query(index, seed):
    rng = random.Random(seed)
    chunks = [make_chunk(i, " ".join(rng.choices(VOCAB, k=rng.randint(3, 12))),
                         rng.sample(ALL_PRINCIPALS, rng.choice([0, 1, 1, 2, 3])),
                         source=rng.choice(["alpha", "beta", "gamma"])) for i in range(300)]
    index.upsert(chunks)
    index.commit()
    for _ in range(30):
        principals = random_principals(rng)
        stale = tuple(rng.sample(["alpha", "beta", "gamma"], rng.randint(1, 2)))
        terms = rng.sample(VOCAB, rng.randint(1, 3))
        flt = SearchFilter(principals=principals, stale_sources=stale)
        expected = {c.id for c in chunks if set(c.acl) & set(principals) and set(terms) & set(c.content.split())
                    and (c.source not in stale or PUBLIC in c.acl)}
        assert {h.chunk_id for h in index.search(words(*terms), flt, limit=400)} == expected
        top = index.search(words(*terms), flt, limit=5)
        assert len(top) == min(5, len(expected)) and {h.chunk_id for h in top} <= expected


def test_empty_principals_and_empty_query_match_nothing(index):
    index.upsert([make_chunk(0, "alpha bravo")])
    index.commit()
    assert index.search(words("alpha"), SearchFilter(principals=()), 10) == []
    assert index.search(LexicalQuery(terms=()), public(), 10) == []
    assert len(index.search(words("alpha"), public(), 10)) == 1


def test_missing_access_is_admins_only(index):
    index.upsert([make_chunk(0, "alpha", acl=[])])
    index.commit()
    assert index.search(words("alpha"), SearchFilter(principals=(PUBLIC, "user:u1")), 10) == []
    assert len(index.search(words("alpha"), SearchFilter(principals=(ADMINS,)), 10)) == 1


def test_filters_do_not_change_scores(index):
    index.upsert([make_chunk(0, "alpha alpha bravo"), make_chunk(1, "alpha charlie", source="other")])
    index.commit()
    wide = {h.chunk_id: h.score for h in index.search(words("alpha"), SearchFilter(principals=(PUBLIC, ADMINS)), 10)}
    narrow = index.search(words("alpha"), public(sources=("repo",), languages=("python",)), 10)
    assert len(narrow) == 1 and narrow[0].score == pytest.approx(wide[narrow[0].chunk_id])


# -- scope ---------------------------------------------------------------------------------------

SCOPE_CORPUS = {
    "a": {"source": "alpha", "path": "src/cairn/api.py", "kind": "code", "language": "python"},
    "b": {"source": "alpha", "path": "src/cairn/web/ui.ts", "kind": "code", "language": "typescript"},
    "c": {"source": "alpha", "path": "src/cairnish.py", "kind": "code", "language": "python"},
    "d": {"source": "beta", "path": "README.md", "kind": "doc", "language": "markdown"},
    "e": {"source": "beta", "path": "PROJ-12", "kind": "issue", "language": ""},
}


@pytest.mark.parametrize("scope,expected", [
    ({}, "abcde"),
    ({"sources": ("alpha",)}, "abc"),
    ({"sources": ("alpha", "beta")}, "abcde"),
    ({"sources": ("nope",)}, ""),
    ({"path_prefixes": ("src/cairn",)}, "ab"),
    ({"path_prefixes": ("/src/cairn/web/",)}, "b"),
    ({"path_prefixes": ("src/cairn/api.py",)}, "a"),
    ({"path_prefixes": ("src/cairn", "README.md")}, "abd"),
    ({"languages": ("python",)}, "ac"),
    ({"kinds": ("doc", "issue")}, "de"),
    ({"sources": ("alpha",), "languages": ("python",), "path_prefixes": ("src",)}, "ac"),
    ({"sources": ("beta",), "kinds": ("code",)}, ""),
])
def test_scope_filters(index, scope, expected):
    chunks = {name: make_chunk(i, "shared words", **fields) for i, (name, fields) in enumerate(SCOPE_CORPUS.items())}
    index.upsert(list(chunks.values()))
    index.commit()
    found = index.search(words("shared"), public(**scope), 10)
    assert {h.chunk_id for h in found} == {chunks[n].id for n in expected}


# -- matching and ranking ------------------------------------------------------------------------

@pytest.mark.parametrize("indexed,asked", [
    ("resp = parseHttpResponse(raw)", "parse_http_response"),
    ("resp = parse_http_response(raw)", "parseHttpResponse"),
    ("resp = ParseHTTPResponse(raw)", "parse http response"),
])
def test_identifier_styles_meet(index, indexed, asked):
    target = make_chunk(0, indexed)
    index.upsert([target, make_chunk(1, "unrelated text about parsing")])
    index.commit()
    found = index.search(LexicalQuery(terms=tuple((t, 1.0) for t in code_tokens(asked))), public(), 10)
    assert found[0].chunk_id == target.id
    raw = index.search(words(asked), public(), 10)  # terms not pre-split are split by the index too
    assert raw[0].chunk_id == target.id


def test_symbol_path_phrase_and_identifier_clauses(index):
    in_symbol = make_chunk(0, "return value", symbol="billing.Invoice.totalAmount", path="lib/x.py")
    in_path = make_chunk(1, "return value", path="src/invoice_total/amount.py")
    in_text = make_chunk(2, "the total amount of the invoice", path="lib/y.py")
    index.upsert([in_symbol, in_path, in_text])
    index.commit()
    found = index.search(LexicalQuery(terms=(), identifiers=("totalAmount",)), public(), 10)
    assert [h.chunk_id for h in found] == [in_symbol.id]
    found = index.search(LexicalQuery(terms=(), phrases=("total amount",)), public(), 10)
    assert [h.chunk_id for h in found] == [in_text.id]
    found = index.search(LexicalQuery(terms=(), paths=("invoice_total",)), public(), 10)
    assert [h.chunk_id for h in found] == [in_path.id]


def test_required_text_must_occur_in_every_hit(index):
    both = make_chunk(0, "the rate limit reached for host", path="lib/a.py")
    apart = make_chunk(1, "rate limit of a host; the budget was reached", path="lib/b.py")
    index.upsert([both, apart])
    index.commit()
    query = LexicalQuery(terms=(("rate", 1.0), ("limit", 1.0), ("host", 1.0)), required=("rate limit reached",))
    assert [h.chunk_id for h in index.search(query, public(), 10)] == [both.id]
    assert {h.chunk_id for h in index.search(words("rate", "limit", "host"), public(), 10)} == {both.id, apart.id}
    assert index.search(LexicalQuery(terms=(("rate", 1.0),), required=("limit exceeded",)), public(), 10) == []


def test_term_statistics_count_chunks_holding_each_token(index):
    index.upsert([make_chunk(0, "alpha bravo"), make_chunk(1, "alpha keepAliveSeconds"), make_chunk(2, "charlie")])
    index.commit()
    total, freqs = index.term_statistics(["alpha", "keepaliveseconds", "alive", "zulu"])
    assert total == 3 and freqs == {"alpha": 2, "keepaliveseconds": 1, "alive": 1, "zulu": 0}


def test_field_boosts_rank_symbol_matches_first(tmp_path):
    chunks = [make_chunk(0, "widget helper code"), make_chunk(1, "other code", symbol="ui.Widget")]
    for symbol_boost, winner in ((5.0, 1), (0.01, 0)):
        ix = TantivyIndex(tmp_path / str(symbol_boost), boosts=FieldBoosts(symbol=symbol_boost))
        ix.upsert(chunks)
        ix.commit()
        assert ix.search(words("widget"), public(), 10)[0].chunk_id == chunks[winner].id
        ix.close()


def test_results_merge_across_sources_by_score(index):
    strong = make_chunk(0, "kilo kilo kilo", source="one")
    weak = make_chunk(1, "kilo " + " ".join(VOCAB), source="two")
    index.upsert([weak, strong])
    index.commit()
    found = index.search(words("kilo"), public(), 10)
    assert [h.chunk_id for h in found] == [strong.id, weak.id]
    assert [h.chunk_id for h in index.search(words("kilo"), public(), 1)] == [strong.id]


def test_ties_at_the_cut_are_broken_by_chunk_id_across_sources(index):
    same = [make_chunk(i, "lima lima", source=f"s{i % 4}", path=f"p{i}.py") for i in range(12)]
    index.upsert(same)
    index.commit()
    everything = index.search(words("lima"), public(), 50)
    assert len({round(h.score, 6) for h in everything}) == 1  # identical text and length: one score
    assert [h.chunk_id for h in everything] == sorted(c.id for c in same)
    assert [h.chunk_id for h in index.search(words("lima"), public(), 5)] == sorted(c.id for c in same)[:5]


def test_a_source_added_by_another_writer_is_searched_without_reopening(tmp_path):
    reader = TantivyIndex(tmp_path / "ft")
    first = TantivyIndex(tmp_path / "ft")
    first.upsert([make_chunk(0, "mike one", source="one")])
    first.close()
    assert len(reader.search(words("mike"), public(), 10)) == 1  # lists the sources (and caches them)
    other = TantivyIndex(tmp_path / "ft")
    other.upsert([make_chunk(1, "mike two", source="two")])
    other.close()
    assert len(reader.search(words("mike"), public(), 10)) == 2
    assert sorted(reader.sources()) == ["one", "two"]
    reader.close()


# -- writes, ids, persistence, locking -----------------------------------------------------------

def test_upsert_is_idempotent_delete_removes_and_commit_publishes(index):
    chunks = [make_chunk(i, f"alpha n{i}", source="alpha" if i % 2 else "beta") for i in range(20)]
    index.upsert(chunks)
    assert index.search(words("alpha"), public(), 100) == []  # not committed yet
    index.commit()
    index.upsert(chunks)
    index.commit()
    assert len(index.search(words("alpha"), public(), 100)) == 20
    assert index.ids() == {c.id for c in chunks}
    assert index.ids("alpha") == {c.id for c in chunks[1::2]}
    index.delete("alpha", [chunks[1].id, chunks[3].id])
    index.delete("never-seen", [chunks[0].id])
    index.commit()
    assert chunks[1].id not in index.ids() and chunks[1].id not in index.ids("alpha")
    assert {h.chunk_id for h in index.search(words("alpha"), public(), 100)} == {c.id for c in chunks} - {
        chunks[1].id, chunks[3].id}
    assert index.ids("never-seen") == set()


def test_data_persists_across_reopen(tmp_path):
    first = TantivyIndex(tmp_path / "ft")
    chunks = [make_chunk(i, f"persist me {i}", source="weird/../name ü") for i in range(5)]
    first.upsert(chunks)
    first.close()  # close commits what is pending
    second = TantivyIndex(tmp_path / "ft")
    assert second.sources() == ["weird/../name ü"]
    assert second.ids() == {c.id for c in chunks}
    assert len(second.search(words("persist"), public(), 10)) == 5
    second.close()
    with pytest.raises(StoreError, match="closed"):
        second.upsert(chunks)


@pytest.mark.parametrize("name", ["../../etc", "/abs/path", "a/b", "", ".", "..", "名前", "x" * 300, "a b\0c"])
def test_shard_dirs_stay_under_root(name):
    dirname = shard_dirname(name)
    assert "/" not in dirname and "\0" not in dirname and dirname not in ("", ".", "..") and len(dirname) < 60
    assert shard_dirname(name + "!") != dirname


def test_second_writer_process_is_refused(tmp_path):
    index = TantivyIndex(tmp_path / "ft")
    index.upsert([make_chunk(0, "locked")])  # holds the writer for source "repo"
    script = (
        "import sys; from pathlib import Path\n"
        "from indexer.stores.fulltext import TantivyIndex\nfrom indexer.stores import StoreError\n"
        "from indexer.models import Chunk\n"
        f"ix = TantivyIndex(Path({str(tmp_path / 'ft')!r}))\n"
        "try:\n    ix.delete('repo', ['x'])\n"
        "except StoreError as exc:\n    print(exc); sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "in use by another process" in done.stdout
    index.close()


# -- layout ---------------------------------------------------------------------------------------

def _legacy_root(root: Path, sources: dict[str, list[Chunk]]) -> None:
    """An index root as INDEX_VERSION 2 wrote it: one tantivy index per source, its name in source.txt."""
    import tantivy

    from indexer.stores.fulltext import ANALYZER, build_schema, tantivy_document

    for source, chunks in sources.items():
        shard = root / shard_dirname(source)
        (shard / "tantivy").mkdir(parents=True)
        (shard / "source.txt").write_text(source)
        old = tantivy.Index(build_schema(), path=str(shard / "tantivy"))
        old.register_tokenizer(ANALYZER, code_analyzer())
        writer = old.writer(heap_size=15_000_000, num_threads=1)
        for chunk in chunks:
            writer.add_document(tantivy_document(chunk, chunk.id))
        writer.commit()
        writer.wait_merging_threads()


def test_a_new_root_holds_one_shared_index_for_every_source(tmp_path):
    index = TantivyIndex(tmp_path / "ft")
    index.upsert([make_chunk(i, "november", source=f"s{i}") for i in range(5)])
    index.commit()
    assert not index.legacy
    assert sorted(p.name for p in (tmp_path / "ft").iterdir()) == ["history", "shared"]
    assert index.sources() == [f"s{i}" for i in range(5)]
    assert len(index.search(words("november"), public(sources=("s1", "s3")), 10)) == 2
    index.close()


def _commit(n: int, message: str, source: str = "repo") -> Chunk:
    return make_chunk(n, message, source=source, path=f"commits/{n:040x}", kind="commit", language="")


CODE_KINDS = ("code", "doc", "text")


def test_commits_do_not_change_how_code_ranks(tmp_path):
    """Commit messages live in their own index: adding thousands of them leaves every code score as it
    was (in one index they change document frequencies and the average length BM25 normalises by)."""
    index = TantivyIndex(tmp_path / "ft")
    code = [make_chunk(i, f"def handler_{i}(): retry the request " + "session " * (i % 7) + "timeout " * (i % 3),
                       path=f"src/m{i}.py") for i in range(40)]
    index.upsert(code)
    index.commit()
    query, only_code = words("retry", "session", "timeout"), public(kinds=CODE_KINDS)
    before = index.search(query, only_code, 20)
    stats_before = index.term_statistics(["retry", "session"])
    index.upsert([_commit(i, f"Fix retry of session {i}" if i % 2 else f"Bump version {i}") for i in range(600)])
    index.commit()
    assert index.search(query, only_code, 20) == before
    assert index.term_statistics(["retry", "session"]) == stats_before
    # a query that admits commits sees both, merged by score; commits alone come from the commit index
    mixed = index.search(words("retry"), public(), 1000)
    assert {h.chunk_id for h in mixed} >= {c.id for c in code} and len(mixed) == 40 + 300
    commits = index.search(words("retry"), public(kinds=("commit",)), 1000)
    assert len(commits) == 300 and not {h.chunk_id for h in commits} & {c.id for c in code}
    assert index.facet_counts(None, public(), "kind") == {"code": 40, "commit": 600}
    assert index.facet_counts(None, public(kinds=CODE_KINDS), "kind") == {"code": 40}
    index.close()


def test_commits_are_deleted_and_listed_with_their_source(tmp_path):
    index = TantivyIndex(tmp_path / "ft")
    code, commits = make_chunk(0, "alpha", source="a"), [_commit(i, "alpha fix", source="a") for i in range(3)]
    other = _commit(9, "alpha fix", source="b")
    index.upsert([code, *commits, other])
    index.commit()
    assert index.sources() == ["a", "b"]
    assert index.ids("a") == {code.id} | {c.id for c in commits}
    index.delete("a", [commits[0].id, code.id, other.id])  # another source's id is never deleted
    index.commit()
    assert index.ids("a") == {c.id for c in commits[1:]}
    assert index.ids("b") == {other.id}
    index.close()
    reopened = TantivyIndex(tmp_path / "ft")
    assert {h.chunk_id for h in reopened.search(words("alpha"), public(), 10)} == {c.id for c in commits[1:]} | {other.id}
    reopened.close()


def test_a_legacy_per_source_root_keeps_serving_and_taking_writes(tmp_path):
    root = tmp_path / "ft"
    old = {"a": [make_chunk(0, "oscar one", source="a")], "b": [make_chunk(1, "oscar two", source="b")]}
    _legacy_root(root, old)
    index = TantivyIndex(root)
    assert index.legacy
    assert {h.chunk_id for h in index.search(words("oscar"), public(), 10)} == {c.id for cs in old.values() for c in cs}
    fresh = make_chunk(2, "oscar three", source="c")
    index.upsert([fresh])
    index.delete("a", [old["a"][0].id])
    index.commit()
    assert sorted(index.sources()) == ["a", "b", "c"]
    assert index.ids() == {old["b"][0].id, fresh.id}
    assert not (root / "shared").exists()  # it stays in its layout until its generation is rebuilt
    index.close()


def test_ties_beyond_the_cut_in_one_index_are_broken_by_chunk_id(index):
    same = [make_chunk(i, "papa papa", path=f"src/f{i}.py") for i in range(40)]
    for start in range(0, 40, 10):  # several segments: tantivy's own tie order is by position
        index.upsert(same[start:start + 10])
        index.commit()
    for limit in (1, 5, 39):
        assert [h.chunk_id for h in index.search(words("papa"), public(), limit)] == sorted(c.id for c in same)[:limit]


def test_upsert_indexes_expansions_computed_elsewhere(index):
    """A batch prepared in a worker brings its texts' identifier expansions; they are what gets
    indexed (here a deliberately different one, to see it used), and missing texts are expanded here."""
    given = make_chunk(0, "getUser quebec", path="src/given.py")
    other = make_chunk(1, "getUser romeo", path="src/other.py")
    index.upsert([given, other], expanded={given.content: "sierra"})
    index.commit()
    assert [h.chunk_id for h in index.search(words("sierra"), public(), 10)] == [given.id]
    assert [h.chunk_id for h in index.search(words("get"), public(), 10)] == [other.id]
