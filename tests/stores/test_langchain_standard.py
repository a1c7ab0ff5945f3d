"""langchain-tests' standard `VectorStoreIntegrationTests` on the upstream LangChain classes
that the adapters hand out for notebook experiments (langchain-pinecone's
`PineconeVectorStore`, langchain-weaviate's `WeaviateVectorStore`), driven through the real
SDKs against the loopback emulators.

The app does not use these classes on its data path (see "Why the native SDK" in
`rag_app.stores.pinecone` and `rag_app.stores.weaviate`). Where an upstream class departs
from LangChain's contract the test is a strict xfail with the reason (``*_KNOWN_FAILURES``),
so an upstream fix shows up as an XPASS and the entry must go. Reasons starting "emulator:"
would mark a difference between an emulator and the real service; there are none today.

Async: langchain-pinecone's async path opens its own ``PineconeAsyncio`` (aiohttp) client on
the index host; `WeaviateVectorStore` built without ``client_async`` (as here and in
`WeaviateStore.as_langchain`) runs its async methods on the sync client in an executor.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import ClassVar, NamedTuple

import pytest

pytest.importorskip("langchain_tests", reason="langchain-tests (dev extra) is not installed")
pytest.importorskip("langchain_pinecone", reason="langchain-pinecone is not installed")
pytest.importorskip("langchain_weaviate", reason="langchain-weaviate is not installed")

import weaviate
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_pinecone import PineconeVectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from langchain_weaviate import WeaviateVectorStore
from pinecone.exceptions import NotFoundException, PineconeApiTypeError

from rag_app.stores.pinecone import PineconeOptions, PineconeStore, open_pinecone
from tests.emulators.pinecone_server import PineconeEmulator
from tests.emulators.weaviate_server import WeaviateEmulator

pytestmark = [pytest.mark.server]

API_KEY = "test-key"
DIMENSION = 6  # langchain_tests' EMBEDDING_SIZE

# The suite's async tests are plain coroutines and pytest-asyncio runs in strict mode here:
# mark the classes `asyncio` and silence the plugin's note about their sync tests.
_ASYNC_MARKS = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings(
        "ignore:The test <Function .*> is marked with '@pytest.mark.asyncio' but it is not "
        "an async function:pytest.PytestWarning"
    ),
]


class Known(NamedTuple):
    """A known failure: the exception the test dies of, and why."""

    raises: type[BaseException]
    reason: str


def _sync_and_async(failures: dict[str, Known]) -> dict[str, Known]:
    """The suite runs each check twice (``test_x`` and ``test_x_async``), failing alike."""
    return {**failures, **{f"{name}_async": known for name, known in failures.items()}}


class _KnownFailures:
    """Strict xfails by test name (as in `tests.conformance.store_conformance`), also pinned
    to the exception, so a test failing for another reason is reported as a failure."""

    known_failures: ClassVar[dict[str, Known]] = {}

    @pytest.fixture(autouse=True)
    def _mark_known_failures(self, request: pytest.FixtureRequest) -> None:
        known = self.known_failures.get(request.node.name)
        if known:
            request.node.add_marker(
                pytest.mark.xfail(raises=known.raises, reason=known.reason, strict=True)
            )


# -- Pinecone ------------------------------------------------------------------------------
_PC_NO_GET_BY_IDS = (
    "upstream: langchain-pinecone 0.2.13 PineconeVectorStore has no get_by_ids "
    "(NotImplementedError: PineconeVectorStore does not yet support get_by_ids.)"
)
PINECONE_KNOWN_FAILURES: dict[str, Known] = _sync_and_async(
    {
        "test_add_documents": Known(
            AssertionError,
            "upstream: langchain-pinecone 0.2.13 add_texts/aadd_texts write the text into the "
            "caller's metadata dicts (metadata[text_key] = text), so the Documents passed to "
            "add_documents gain a 'text' key",
        ),
        "test_delete_missing_content": Known(
            NotFoundException,
            "upstream: Pinecone answers 404 'Namespace not found' (code 5) to a delete in a "
            "namespace that holds no records (so on any empty store), and langchain-pinecone "
            "0.2.13 delete/adelete let the NotFoundException through",
        ),
        "test_get_by_ids": Known(NotImplementedError, _PC_NO_GET_BY_IDS),
        "test_get_by_ids_missing": Known(NotImplementedError, _PC_NO_GET_BY_IDS),
        "test_add_documents_documents": Known(NotImplementedError, _PC_NO_GET_BY_IDS),
        "test_add_documents_with_existing_ids": Known(
            PineconeApiTypeError,
            "upstream: when only some Documents carry an id, add_documents passes ids "
            "['foo', None] and langchain-pinecone 0.2.13 add_texts uses them as given (it "
            "generates uuids only when ids is empty), so pinecone 7.3.0 rejects the None id "
            "(PineconeApiTypeError ... at ['id']); it also has no get_by_ids",
        ),
    }
)


class PlainFloatFakeEmbedding(DeterministicFakeEmbedding):
    """The suite's `DeterministicFakeEmbedding` (same vectors) returning Python floats.

    The suite's embedding returns `numpy.float64` values; langchain-pinecone 0.2.13 hands them
    to pinecone 7.3.0 unconverted and the SDK's upsert rejects them client-side (see
    `test_pinecone_vectorstore_upserts_numpy_float_embeddings`), which would fail every
    write before it reaches the service. Real embedding models return Python floats, so the
    Pinecone class runs on this copy to check the rest of the contract.
    """

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in vector] for vector in super().embed_documents(texts)]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in super().embed_query(text)]


@pytest.fixture(scope="module")
def pinecone_emulator() -> Iterator[PineconeEmulator]:
    with PineconeEmulator(api_key=API_KEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def pinecone_adapter(pinecone_emulator: PineconeEmulator) -> Iterator[PineconeStore]:
    """The adapter over a cosine serverless index it creates (dimension 6)."""
    options = PineconeOptions(
        api_key=API_KEY,
        controller_host=pinecone_emulator.url,
        host=None,  # never a developer's RAG_PINECONE_HOST
        retry_base_delay_s=0.001,
        timeout_s=5.0,
    )
    store = open_pinecone(
        options,
        index_name=f"lc-std-{uuid.uuid4().hex[:8]}",
        dimension=DIMENSION,
        embedding_model="deterministic-fake",
    )
    store.create_index()
    yield store
    store.close()


def pinecone_langchain(adapter: PineconeStore, embeddings: Embeddings) -> PineconeVectorStore:
    """`as_langchain` in a namespace of its own (a fresh, empty store), checking its label."""
    with pytest.warns(UserWarning, match="BYPASSES PERMISSIONS"):
        return adapter.as_langchain(embeddings, tenant=f"lc-{uuid.uuid4().hex[:12]}")


class TestPineconeVectorStoreStandard(_KnownFailures, VectorStoreIntegrationTests):
    """`PineconeVectorStore` from `PineconeStore.as_langchain`, one namespace per test."""

    pytestmark = _ASYNC_MARKS
    known_failures = PINECONE_KNOWN_FAILURES

    @staticmethod
    def get_embeddings() -> Embeddings:
        return PlainFloatFakeEmbedding(size=DIMENSION)

    @pytest.fixture
    def vectorstore(self, pinecone_adapter: PineconeStore) -> VectorStore:
        return pinecone_langchain(pinecone_adapter, self.get_embeddings())


@pytest.mark.xfail(
    strict=True,
    raises=PineconeApiTypeError,
    reason="upstream: langchain-pinecone 0.2.13 passes embedding values to pinecone 7.3.0 "
    "unconverted, and the SDK's upsert rejects numpy.float64 (what langchain-core's "
    "DeterministicFakeEmbedding returns): 'Required value type is float and passed type was "
    "float64 at ['values'][0]'",
)
def test_pinecone_vectorstore_upserts_numpy_float_embeddings(
    pinecone_adapter: PineconeStore,
) -> None:
    store = pinecone_langchain(pinecone_adapter, DeterministicFakeEmbedding(size=DIMENSION))
    store.add_texts(["foo"], ids=["1"])
    assert [doc.page_content for doc in store.similarity_search("foo", k=1)] == ["foo"]


# -- Weaviate ------------------------------------------------------------------------------
_WV_NO_DOC_ID = (
    "; and its search results never set Document.id (langchain-weaviate 0.0.8 builds "
    "Document(page_content, metadata) only)"
)
_WV_ID_PROPERTY = (
    "upstream: langchain-weaviate 0.0.8 writes metadata keys as Weaviate properties verbatim "
    "and the suite's metadata key 'id' is reserved: weaviate-client rejects every object "
    "(WeaviateInsertInvalidPropertyError: 'It is forbidden to insert `id` or `vector` inside "
    "properties'), add_texts only logs the batch failures and returns the ids, and the store "
    "stays empty"
)
_WV_NON_UUID_IDS = (
    "upstream: langchain-weaviate 0.0.8 passes the caller's ids to Weaviate as object UUIDs "
    "and the suite's ids ('1', '2', 'foo') are not UUIDs: weaviate-client raises ValueError "
    "\"Not valid 'uuid' or 'uuid' can not be extracted from value\" before sending anything"
)
_WV_NO_GET_BY_IDS = (
    "WeaviateVectorStore has no get_by_ids "
    "(NotImplementedError: WeaviateVectorStore does not yet support get_by_ids.)"
)
WEAVIATE_KNOWN_FAILURES: dict[str, Known] = _sync_and_async(
    {
        "test_add_documents": Known(AssertionError, _WV_ID_PROPERTY + _WV_NO_DOC_ID),
        "test_deleting_documents": Known(ValueError, _WV_NON_UUID_IDS + _WV_NO_DOC_ID),
        "test_deleting_bulk_documents": Known(ValueError, _WV_NON_UUID_IDS + _WV_NO_DOC_ID),
        "test_delete_missing_content": Known(
            ValueError,
            "upstream: langchain-weaviate 0.0.8 delete/adelete filter on Filter.by_id()"
            ".contains_any(ids), which raises ValueError \"Not valid 'uuid' ...\" for the "
            "suite's non-UUID ids ('1', '2', '3') instead of ignoring missing ids",
        ),
        "test_add_documents_with_ids_is_idempotent": Known(
            ValueError, _WV_NON_UUID_IDS + _WV_NO_DOC_ID
        ),
        "test_add_documents_by_id_with_mutation": Known(
            ValueError, _WV_NON_UUID_IDS + _WV_NO_DOC_ID
        ),
        "test_get_by_ids": Known(ValueError, f"{_WV_NON_UUID_IDS}; and {_WV_NO_GET_BY_IDS}"),
        "test_get_by_ids_missing": Known(
            NotImplementedError, f"upstream: langchain-weaviate 0.0.8 {_WV_NO_GET_BY_IDS}"
        ),
        "test_add_documents_documents": Known(
            NotImplementedError, f"{_WV_ID_PROPERTY}; then {_WV_NO_GET_BY_IDS}"
        ),
        "test_add_documents_with_existing_ids": Known(
            ValueError, f"{_WV_NON_UUID_IDS}; and {_WV_NO_GET_BY_IDS}"
        ),
    }
)


@pytest.fixture(scope="module")
def weaviate_emulator() -> Iterator[WeaviateEmulator]:
    with WeaviateEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def weaviate_client(weaviate_emulator: WeaviateEmulator) -> Iterator[weaviate.WeaviateClient]:
    client = weaviate.connect_to_custom(
        http_host="127.0.0.1",
        http_port=weaviate_emulator.http_port,
        http_secure=False,
        grpc_host="127.0.0.1",
        grpc_port=weaviate_emulator.grpc_port,
        grpc_secure=False,
    )
    yield client
    client.close()


class TestWeaviateVectorStoreStandard(_KnownFailures, VectorStoreIntegrationTests):
    """`WeaviateVectorStore` (single-tenant, the default) over a fresh collection per test."""

    pytestmark = _ASYNC_MARKS
    known_failures = WEAVIATE_KNOWN_FAILURES

    @pytest.fixture
    def vectorstore(self, weaviate_client: weaviate.WeaviateClient) -> Iterator[VectorStore]:
        name = f"LcStd_{uuid.uuid4().hex[:12]}"
        store = WeaviateVectorStore(
            client=weaviate_client,
            index_name=name,
            text_key="text",
            embedding=self.get_embeddings(),
        )
        try:
            yield store
        finally:
            weaviate_client.collections.delete(name)


def test_known_failures_name_real_tests() -> None:
    """A renamed or removed standard test must not leave a dead entry behind."""
    names = {name for name in dir(VectorStoreIntegrationTests) if name.startswith("test_")}
    assert set(PINECONE_KNOWN_FAILURES) <= names
    assert set(WEAVIATE_KNOWN_FAILURES) <= names
