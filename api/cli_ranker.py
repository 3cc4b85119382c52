"""`cairn ranker`: fit, show and clear the feature weights learned from a source's own commits."""
from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

from api.cli_errors import fail, no_source
from api.cli_format import Col, CompactTable, human_time
from indexer.catalog.schema import RankerFitRecord
from indexer.settings import Settings

ranker_app = typer.Typer(no_args_is_help=True, help="Learn ranking weights from a source's commit history "
                                                    "(used by search with CAIRN_LEARNED_RANKING=true).")
out = Console()


def _as_dict(fit: RankerFitRecord) -> dict[str, Any]:
    return {**fit.__dict__, "fitted_at": fit.fitted_at.isoformat()}


def _verdict(fit: RankerFitRecord) -> str:
    return "kept" if fit.kept else "not kept (defaults stay)"


@ranker_app.command("fit")
def ranker_fit(ctx: typer.Context, source: str = typer.Argument(..., help="The git source whose commits teach."),
               commits: int = typer.Option(300, "--commits", min=1, help="Newest usable commits to learn from."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Search each commit message, fit weights that rank the touched files first, keep them if they beat the
    defaults on the newest fifth of the commits (held out)."""
    from api.cli import local_services
    from retrieval.learned_ranking import RankerError, fit_source
    from retrieval.searcher import build_searcher

    settings: Settings = ctx.obj
    with local_services(settings) as svc:
        if svc.catalog.get_source(source) is None:
            no_source(source)
        searcher = build_searcher(svc)
        try:
            fit = fit_source(searcher, svc.catalog, source, commits)
        except RankerError as exc:
            fail(str(exc), hint="a git source indexed with its history (CAIRN_HISTORY_COMMITS > 0) can be fitted")
        finally:
            searcher.close()
    if as_json:
        print(json.dumps(_as_dict(fit)))
        return
    out.print(f"{source}: {fit.pairs} commits ({fit.held_out} held out), held-out MRR {fit.mrr_default:.3f} with "
              f"the default weights, {fit.mrr_learned:.3f} learned: {_verdict(fit)} ({fit.seconds:.1f}s)",
              soft_wrap=True)


@ranker_app.command("show")
def ranker_show(ctx: typer.Context, source: str | None = typer.Argument(None, help="One source (default: all)."),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """The fits stored per source; with SOURCE, its weights too."""
    from api.cli_jobs import local_catalog

    catalog = local_catalog(ctx.obj)
    fits = catalog.ranker_fits()
    if source is not None:
        if catalog.get_source(source) is None:
            no_source(source)
        fits = {source: fits[source]} if source in fits else {}
        if not fits:
            fail(f"source {source!r} has no fitted weights", hint=f"`cairn ranker fit {source}` fits them")
    rows = [_as_dict(f) for _, f in sorted(fits.items())]
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        out.print("no fitted weights: `cairn ranker fit SOURCE` learns them from a source's commits")
        return
    table = CompactTable(Col("source"), Col("fitted", fixed=True), Col("commits", fixed=True),
                         Col("MRR default", fixed=True), Col("MRR learned", fixed=True), Col("kept", fixed=True))
    for f in fits.values():
        table.add_row(f.source, human_time(f.fitted_at.isoformat()), str(f.pairs), f"{f.mrr_default:.3f}",
                      f"{f.mrr_learned:.3f}", "yes" if f.kept else "no")
    table.print(out)
    if source is not None:
        for name, value in fits[source].weights.items():
            out.print(f"  {name:14} {value:+.3f}")


@ranker_app.command("clear")
def ranker_clear(ctx: typer.Context, source: str = typer.Argument(..., help="The source whose weights go.")) -> None:
    """Forget a source's fitted weights: its search goes back to the defaults."""
    from api.cli_jobs import local_catalog

    catalog = local_catalog(ctx.obj)
    if catalog.get_source(source) is None:
        no_source(source)
    if not catalog.clear_ranker_fit(source):
        fail(f"source {source!r} has no fitted weights")
    out.print(f"cleared the fitted weights of {source}")
