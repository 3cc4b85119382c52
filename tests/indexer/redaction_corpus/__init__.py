"""The labelled redaction corpus: templates and values (`templates`, `values`), the builder of corpus.jsonl
(`build`) and the scoring of the secret detector against it (`score`, pinned by test_redaction_corpus.py)."""
