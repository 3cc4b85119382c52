"""Query analysis on short queries and on a pasted bug report with code and a traceback."""
import math
import time

import pytest

from connectors.rendering.markdown import without_html_comments
from retrieval.query_analysis import (
    DENSE_CHARS,
    MAX_QUERY_CHARS,
    STOP_WORDS,
    QueryError,
    analyse,
    normalise_path,
)

BUG_REPORT = '''Session.resolve_redirects drops the Authorization header on same-host HTTPS redirects

Hi! Since upgrading to requests 2.32 I'm seeing the `Authorization` header being stripped when the
server redirects from http://example.com/a to https://example.com/b. I think `rebuild_auth()` in
requests/sessions.py should keep it ("same host different scheme"). The code is at
https://github.com/psf/requests/blob/main/src/requests/models.py#L120 too.

```python
import requests
s = requests.Session()
r = s.get("http://example.com/a", auth=("user", "pass"), allow_redirects=True)
print(r.status_code)
```

Traceback (most recent call last):
  File "/home/alice/venv/lib/python3.11/site-packages/requests/sessions.py", line 589, in request
    resp = self.send(prep, **send_kwargs)
  File "/home/alice/venv/lib/python3.11/site-packages/requests/adapters.py", line 501, in send
    raise ConnectionError(err, request=request)
  File "/usr/lib/python3.11/http/client.py", line 1374, in getresponse
    response.begin()
requests.exceptions.TooManyRedirects: Exceeded 30 redirects.

Expected behaviour: the header is kept. Thanks for the great library, it would be really nice
if this worked again because we use it everywhere in our services and I have been debugging
this for a couple of days now without finding a workaround that does not involve patching.
'''


def weights(text: str, **kw) -> dict[str, float]:
    return dict(analyse(text, **kw).lexical.terms)


@pytest.fixture(scope="module")
def report():
    return analyse(BUG_REPORT)


def test_report_identifiers(report):
    for ident in ("Session.resolve_redirects", "Authorization", "rebuild_auth", "allow_redirects",
                  "requests.exceptions.TooManyRedirects", "request", "send"):
        assert ident in report.identifiers, ident
    assert "getresponse" not in report.identifiers  # a standard-library frame
    assert not any(i.startswith(("s.", "r.", "self.")) for i in report.identifiers)


def test_report_paths(report):
    assert report.paths[:2] == ("requests/sessions.py", "requests/adapters.py")
    assert "src/requests/models.py" in report.paths  # from the GitHub blob URL
    assert not any("http/client.py" in p for p in report.paths)


def test_report_weights(report):
    w = dict(report.lexical.terms)
    assert not STOP_WORDS.intersection(w)
    for noise in ("the", "is", "hi", "thanks", "self", "py", "line", "file", "traceback", "most", "recent"):
        assert noise not in w, noise
    assert w["resolveredirects"] >= 2.0 and w["rebuildauth"] >= 2.0  # identifiers weighted up
    assert w["resolve"] < w["resolveredirects"]  # parts at normal weight
    assert w["adapters"] >= 1.5  # a traceback path word
    assert w["toomanyredirects"] > w["stripped"]  # error line identifier over prose word
    assert w["server"] == 1.0
    assert "getresponse" not in w and "begin" not in w  # standard-library frame and its source line
    assert "2008" not in w and "589" not in w


def test_report_phrases_and_dense_text(report):
    assert report.phrases == ("same host different scheme",)
    dense = report.dense_text
    assert len(dense) <= DENSE_CHARS
    assert dense.startswith("Session.resolve_redirects drops the Authorization header")
    assert "requests.exceptions.TooManyRedirects: Exceeded 30 redirects." in dense
    assert "requests/adapters.py send" in dense


def test_terms_sorted_and_capped():
    q = analyse(BUG_REPORT, max_terms=5)
    full = analyse(BUG_REPORT).lexical.terms
    assert q.lexical.terms == full[:5]
    assert [w for _, w in full] == sorted((w for _, w in full), reverse=True)


@pytest.mark.parametrize("text, expected", [
    ("retry backoff jitter", {"retry": 1.0, "backoff": 1.0, "jitter": 1.0}),
    ("where is the token hashed", {"token": 1.0, "hashed": 1.0}),
    ("retry retry retry backoff", {"retry": 1 + math.log(3), "backoff": 1.0}),
    ("hashToken", {"hashtoken": 2.0, "hash": 1.0, "token": 1.0}),
    ("the is of", {"the": 1.0, "is": 1.0, "of": 1.0}),  # only stop words: search them anyway
    ("error 0x7f3a2c9d8e 12345 x", {"error": 1.0}),
])
def test_short_query_terms(text, expected):
    assert weights(text) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("text, identifiers", [
    ("why does `foo()` fail", ("foo",)),
    ("parseHttpResponse and HTTPAdapter", ("parseHttpResponse", "HTTPAdapter")),
    ("set max_retries on the pool", ("max_retries",)),
    ("what does os.path.join do", ("os.path.join",)),
    ("call build_filter(principal)", ("build_filter",)),
    ("e.g. this, i.e. that, see example.com", ()),
    ('the "verify" parameter', ("verify",)),
    ("self.session.mount is wrong", ("session.mount",)),
    ("__init__ of Session", ("__init__",)),
])
def test_identifiers(text, identifiers):
    assert analyse(text).identifiers == identifiers


@pytest.mark.parametrize("text, paths", [
    ("see requests/sessions.py:123", ("requests/sessions.py",)),
    ("bug in sessions.py, line 4", ("sessions.py",)),
    ("flask.json.dumps breaks", ()),
    (r'File "C:\Python311\Lib\site-packages\flask\app.py", line 2, in wsgi_app', ("flask/app.py",)),
    ("at handler (/srv/app/src/routes/users.ts:10:5)", ("app/src/routes/users.ts",)),
    ("goroutine 1 [running]:\nmain.run()\n\t/home/u/proj/cmd/server/main.go:42 +0x1d", ("proj/cmd/server/main.go",)),
    ("open ./docs/index.md and README.rst", ("docs/index.md", "README.rst")),
])
def test_paths(text, paths):
    assert analyse(text).paths == paths


@pytest.mark.parametrize("raw, expected", [
    ("/usr/lib/python3/site-packages/requests/api.py", "requests/api.py"),
    ("./src/app.py", "src/app.py"),
    ("/home/alice/work/project/src/pkg/mod.py", "project/src/pkg/mod.py"),
    ("pkg\\mod.py", "pkg/mod.py"),
])
def test_normalise_path(raw, expected):
    assert normalise_path(raw) == expected


def test_phrases_only_short_multiword_prose():
    q = analyse('error "connection pool is full" and "x" in ```"not a phrase here"```')
    assert q.phrases == ("connection pool is full",)


@pytest.mark.parametrize("text", ["", "   ", "\n\t \r\n", "\x00\x01\x1b", "\u200b\u200e"])
def test_empty_queries_raise(text):
    with pytest.raises(QueryError, match="empty"):
        analyse(text)


def test_not_text_raises():
    with pytest.raises(QueryError):
        analyse(None)  # type: ignore[arg-type]


def test_bad_max_terms():
    with pytest.raises(ValueError):
        analyse("retry", max_terms=0)


def test_control_characters_and_unicode():
    q = analyse("na\u00efve\x00Gr\u00f6\u00dfe\x1b[0m \u65e5\u672c\u8a9e token\u200bhash")
    assert "\x00" not in q.text and "\x1b" not in q.text
    assert {"naïve", "größe", "日本語", "token", "hash"} <= set(q.terms)


def test_nfkc_normalises_fullwidth():
    assert analyse("\uff52\uff45\uff54\uff52\uff59")  # fullwidth "retry".terms == ("retry",)


@pytest.mark.parametrize("text", [
    "a" * 50_000,
    "fooBar.baz(x) " * 5_000,
    BUG_REPORT * 20,
    "x/" * 20_000 + ".py",
    "`" * 30_000,
])
def test_very_long_input_is_capped_and_fast(text):
    start = time.perf_counter()
    q = analyse(text)
    assert time.perf_counter() - start < 2.0
    assert len(q.text) <= MAX_QUERY_CHARS
    assert len(q.dense_text) <= DENSE_CHARS
    assert len(q.lexical.terms) <= 64


def test_short_dense_text_is_the_query():
    assert analyse("  where is\n the token   hashed ").dense_text == "where is the token hashed"


TEMPLATED = """Quantity.to_value drops the unit's scale
<!-- Please check CONTRIBUTING.md and CODE_OF_CONDUCT.md,
     and search the existing issues first. -->

### Description
<!-- Describe the bug: astropy/units/core.py? -->
`Quantity.to_value` in astropy/units/quantity.py returns the wrong number.

```html
<!-- a comment in pasted HTML is code: it stays -->
<p>ok</p>
```
<!-- an unclosed comment stays"""


def test_html_comments_of_a_template_are_dropped_outside_code():
    kept = without_html_comments(TEMPLATED)
    assert "CONTRIBUTING" not in kept and "Describe the bug" not in kept and "core.py" not in kept
    assert "<!-- a comment in pasted HTML is code: it stays -->" in kept
    assert kept.endswith("<!-- an unclosed comment stays")
    assert "`Quantity.to_value` in astropy/units/quantity.py" in kept
    q = analyse(TEMPLATED)
    assert q.lexical.paths == ("astropy/units/quantity.py",)
    assert not {"contributing", "conduct"} & {t for t, _ in q.lexical.terms}
    assert "CONTRIBUTING" not in q.dense_text


def test_html_comments_stay_in_a_search_box_query_and_in_a_text_of_nothing_else():
    assert analyse("<!-- TODO: remove -->").text == "<!-- TODO: remove -->"  # searching HTML for a comment
    only = "<!-- Please fill in the template -->\n<!-- and the versions -->"
    assert analyse(only).text == only  # nothing else to search for
    assert without_html_comments("no comment\nhere") == "no comment\nhere"


def test_html_comment_removal_is_linear_on_unclosed_and_many_comments():
    start = time.perf_counter()
    assert without_html_comments("<!--" * 20_000 + "\nx") == ("<!--" * 20_000 + "\nx")
    assert without_html_comments("<!-- a -->b\n" * 5_000).split() == ["b"] * 5_000
    assert without_html_comments("a <!-- one --> b <!-- two") == "a  b <!-- two"
    assert time.perf_counter() - start < 1.0
