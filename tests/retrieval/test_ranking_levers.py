"""The ranking levers measured on the SWE-bench dev set: traceback frames and per-file support."""
from __future__ import annotations

from retrieval.hits import Candidate
from retrieval.query_analysis import analyse
from retrieval.rerank_features import FeatureReranker, FeatureWeights
from retrieval.search import support_by_file

IPYTHON_OLD = """PairGrid errors with hue
```
KeyError                                  Traceback (most recent call last)
~/envs/py3.9/lib/python3.8/site-packages/seaborn/_core.py in _lookup_single(self, key)
    143             # Use a value that's in the original data vector
--> 144             value = self.lookup_table[key]

<ipython-input-3-46dd21e9c95a> in <module>
----> 4 g.map(sns.scatterplot, hue=iris["species"])

~/envs/py3.9/lib/python3.8/site-packages/seaborn/axisgrid.py in map(self, func, **kwargs)
-> 1265         self._map_bivariate(func, indices, **kwargs)
```
"""

IPYTHON_8 = """Plot fails
File ~/code/seaborn/seaborn/_core/plot.py:820, in Plot.plot(self, pyplot)
    819 with theme_context(self._theme_with_defaults()):
--> 820     return self._plot(pyplot)
File ~/miniconda3/lib/python3.10/site-packages/numpy/linalg/linalg.py:2300, in lstsq(a, b, rcond)
LinAlgError: SVD did not converge
"""

PYTHON = """Traceback (most recent call last):
  File "app.py", line 3, in <module>
    s.get(url, timeout=(1, 2, 3))
  File "/usr/lib/python3.11/site-packages/shop/sessions.py", line 40, in get
    return self.send(prepared)
  File "/usr/lib/python3.11/site-packages/shop/adapters.py", line 90, in send
    connect, read = timeout
ValueError: too many values to unpack (expected 2)
"""


def cand(path: str, score: float, start: int = 1, symbol: str = "") -> Candidate:
    return Candidate(chunk_id=f"{path}#{start}", doc_id=path, source="s", path=path, start_line=start,
                     end_line=start + 9, content="pass", symbol=symbol, score=score)


def test_ipython_frames_before_and_since_ipython_8_are_traceback_frames():
    old = analyse(IPYTHON_OLD)
    assert old.frame_paths == ("seaborn/axisgrid.py", "seaborn/_core.py")  # innermost first, no <ipython-input>
    assert {"_lookup_single", "map"} <= set(old.identifiers)
    new = analyse(IPYTHON_8)
    assert new.frame_paths == ("numpy/linalg/linalg.py", "seaborn/seaborn/_core/plot.py")  # ~/: last 4 parts
    assert "Plot.plot" in new.identifiers


def test_python_frames_innermost_first_and_calls_are_not_paths():
    query = analyse(PYTHON + "\nresponse.json() also fails")
    assert query.frame_paths == ("shop/adapters.py", "shop/sessions.py", "app.py")
    assert "response.json" not in query.paths


def test_innermost_project_frame_weighs_most_and_foreign_frames_are_skipped():
    query = analyse(IPYTHON_8)  # numpy's frame is innermost but numpy is not among the candidates
    ranked = FeatureReranker().rerank(query, [cand("seaborn/_core/plot.py", 0.02), cand("seaborn/_stats/x.py", 0.03)])
    plot = next(c for c in ranked if c.path == "seaborn/_core/plot.py")
    assert plot.features["path_frame"] == 1.0
    query = analyse(PYTHON)
    ranked = FeatureReranker().rerank(query, [cand("shop/sessions.py", 0.03), cand("shop/adapters.py", 0.03)])
    assert [(c.path, c.features["path_frame"]) for c in ranked] == [("shop/adapters.py", 1.0),
                                                                     ("shop/sessions.py", 0.5)]
    off = FeatureReranker(FeatureWeights(path_frame=0.0)).rerank(query, [cand("shop/sessions.py", 0.03),
                                                                          cand("shop/adapters.py", 0.03)])
    assert off[0].score == off[1].score


def test_file_support_lifts_a_file_that_matches_in_several_places():
    ranked = [cand("one_lucky_chunk.py", 1.0), cand("many.py", 0.9, 1), cand("many.py", 0.5, 20),
              cand("many.py", 0.4, 40), cand("many.py", -0.2, 60)]
    lifted = support_by_file(ranked, 0.15, 3)
    assert [c.path for c in lifted][:2] == ["many.py", "one_lucky_chunk.py"]
    assert lifted[0].features["file_support"] == 0.15 * (0.5 + 0.4)  # 2nd..4th best, negatives as 0
    assert [c.start_line for c in lifted if c.path == "many.py"] == [1, 20, 40, 60]  # order within the file kept
    assert support_by_file(ranked, 0.0, 3)[0].path == "one_lucky_chunk.py"
