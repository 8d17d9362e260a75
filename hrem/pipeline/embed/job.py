"""The embed job: a corpus -> the embeddings directory of PRODUCT.md (Parquet shards + manifest.json +
failures.parquet), streaming shard by shard, resumable after a kill at any moment.

    summary = run_embed(EmbedConfig(data="shapes/", model="run/", out="emb/"))   # or model="demo"

Steps: open the input (`hrem.data.sources`), plan shards (`plan`), open or resume the manifest
(`manifest`; a different model or input in the same --out is refused unless --overwrite), run the
pending shard tasks on the chosen engine (`engines`), recording each finished shard atomically. Memory is
bounded by one shard (plus 8 bytes per input row for the id uniqueness check), whatever the corpus size.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from hrem.checkpoint.loaded import model_identity
from hrem.data.sources import input_fingerprint
from hrem.pipeline.embed.config import EmbedConfig
from hrem.pipeline.embed.engines import run_tasks
from hrem.pipeline.embed.manifest import JobIdentity, open_manifest, pending_tasks, record_result
from hrem.pipeline.embed.plan import plan_shards, plan_summary
from hrem.pipeline.embed.runner import ShardResult, open_embed_sources
from hrem.store import Manifest, read_failures
from hrem.utils.locks import output_lock
from hrem.utils.paths import refuse_overlap
from hrem.utils.registry import resolve_model

log = logging.getLogger(__name__)


class NonFiniteEmbeddings(RuntimeError):
    """The model gave NaN/inf embeddings: the job must not end as a success (the CLI exits 1)."""


@dataclass(frozen=True)
class EmbedSummary:
    out: Path
    manifest: Manifest
    shards_written: int
    shards_skipped: int
    failures: int
    truncated_captions: int
    seconds: float
    items_embedded: int           # items processed by this run (skipped shards excluded)

    @property
    def items_per_second(self) -> float:
        return self.items_embedded / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        totals = ", ".join(f"{m}: {n}" for m, n in self.manifest.totals().items())
        return [f"embeddings: {self.out}  ({totals}; dim {self.manifest.dim}, {self.manifest.dtype})",
                f"shards: {self.shards_written} written, {self.shards_skipped} already complete (skipped); "
                f"failures: {self.failures} (failures.parquet); captions at the token limit: "
                f"{self.truncated_captions}",
                f"time: {self.seconds:.1f} s, {self.items_per_second:.1f} items/s"]


def _absolute(cfg: EmbedConfig) -> EmbedConfig:
    """Absolute paths, so Ray actors (other working directories) see the same files. The model is resolved
    first: a shipped name ('demo') made absolute would become a path under the working directory."""
    def fix(p: str | Path | None) -> str | None:
        return None if p is None else str(Path(p).expanduser().resolve())
    return dataclasses.replace(cfg, data=fix(cfg.data), model=fix(resolve_model(cfg.model, "retrieval")),
                               out=fix(cfg.out), image_root=fix(cfg.image_root))


def job_identity(cfg: EmbedConfig, input_fp: str) -> JobIdentity:
    ident = model_identity(cfg.model)
    card = ident.card
    return JobIdentity(ident.fingerprint, ident.card_sha256, ident.weights_sha256, card.name, cfg.model,
                       int(card.embed_size), cfg.dtype, bool(getattr(card.head, "normalize", True)), input_fp)


def run_embed(cfg: EmbedConfig, show_progress: bool = True) -> EmbedSummary:
    start = time.perf_counter()
    cfg = _absolute(cfg)
    out = Path(cfg.out)
    refuse_overlap(out, data=cfg.data, image_root=cfg.image_root)
    with output_lock(out, command="hrem embed"):
        return _run_locked(cfg, out, start, show_progress)


def _run_locked(cfg: EmbedConfig, out: Path, start: float, show_progress: bool) -> EmbedSummary:
    sources = open_embed_sources(cfg)
    counts = {m: s.count for m, s in sources.items()}
    sizes = {m: cfg.shard_size(m) for m in sources}
    ident = job_identity(cfg, input_fingerprint(cfg.data, cfg.split, sources, shard_sizes=sizes))
    extra = {"plan": plan_summary(counts, sizes), "source": next(iter(sources.values())).describe,
             "model_dir": cfg.model}
    manifest = open_manifest(out, ident, extra, cfg.overwrite)
    tasks = plan_shards(counts, sizes)
    todo = pending_tasks(out, manifest, tasks)
    done_rows = sum(t.rows for t in tasks) - sum(t.rows for t in todo)
    log.info("%s: %d shard(s) planned, %d complete, %d to embed (engine %s)", out, len(tasks),
             len(tasks) - len(todo), len(todo), cfg.engine)
    state = {"manifest": manifest, "truncated": 0}
    bar = tqdm(total=sum(counts.values()), initial=done_rows, unit="item", desc="embed",
               disable=not show_progress, dynamic_ncols=True)

    def on_result(result: ShardResult) -> None:
        state["manifest"] = record_result(out, state["manifest"], result)
        bar.set_postfix_str(f"{result.task.modality}/{result.task.name}")
        _stop_if_model_broken(cfg, out, result)

    kwargs = {"sources": sources} if cfg.engine == "local" else {}
    with bar:
        run_tasks(cfg.engine, cfg, todo, on_result, bar.update, **kwargs)
    final: Manifest = state["manifest"]
    stats = final.extra.get("shard_stats", {})
    truncated = sum(s.get("truncated", 0) for m in stats.values() for s in m.values())
    failures = read_failures(out)
    _refuse_non_finite(cfg, out, stats, counts)
    _refuse_empty_result(out, final, counts, failures)
    return EmbedSummary(out, final, len(todo), len(tasks) - len(todo), failures.num_rows, truncated,
                        time.perf_counter() - start, sum(t.rows for t in todo))


def _stop_if_model_broken(cfg: EmbedConfig, out: Path, result: ShardResult) -> None:
    """Fail fast when every item of a shard got a NaN/inf embedding: that is the model (NaN weights), and
    embedding the rest of a large corpus would only record more failure rows. The shard is recorded first,
    so a re-run resumes after it (and stops again while the model is unchanged)."""
    task, bad = result.task, result.stats.get("non_finite", 0)
    if bad and bad == task.rows:
        raise NonFiniteEmbeddings(
            f"model {cfg.model} gave non-finite embeddings (NaN/inf) for {bad} of {task.rows} {task.modality} of "
            f"shard {task.modality}/{task.name}, none finite: stopped (are its weights NaN?); the rows are in "
            f"{out / 'failures.parquet'}")


def _refuse_non_finite(cfg: EmbedConfig, out: Path, stats: dict, counts: dict[str, int]) -> None:
    """Some NaN/inf embeddings: every shard is written (the finite rows are good), but the run is not a
    success; the count per modality comes from the manifest, so a re-run of a finished job says it again."""
    bad = {m: sum(s.get("non_finite", 0) for s in stats.get(m, {}).values()) for m in counts}
    found = [f"{n} of {counts[m]} {m}" for m, n in bad.items() if n]
    if found:
        raise NonFiniteEmbeddings(
            f"model {cfg.model} gave non-finite embeddings (NaN/inf) for {', '.join(found)}; the other rows are "
            f"written to {out}, these are rows of {out / 'failures.parquet'} (reason 'non-finite embedding')")


def _refuse_empty_result(out: Path, manifest: Manifest, counts: dict[str, int], failures) -> None:
    """A modality with input but not one embedded row is a broken model or input, not a success (an all-NaN
    checkpoint used to exit 0 with 0 rows): fail naming the failures file and the commonest reason."""
    empty = [m for m, n in counts.items() if n and not manifest.rows(m)]
    if not empty:
        return
    reasons = failures.column("reason").to_pylist() if failures.num_rows else []
    common = max(set(reasons), key=reasons.count) if reasons else "unknown"
    raise RuntimeError(f"{out}: expected embedded rows, found 0 of {', '.join(f'{counts[m]} {m}' for m in empty)}; "
                       f"all failed ({out / 'failures.parquet'}; commonest reason: {common})")
