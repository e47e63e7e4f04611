"""Chapter 10: watch a run in Phoenix.

A flowkit run can go where LLM users already look: any OpenTelemetry tracing UI. One
option does it, ``Runner(otel=URL)`` (or ``flowkit run ... --otel URL``), and the run arrives
as one trace: the run, each flow and node, each item's exec call, and inside a call its LLM
requests (model and tokens, as OpenTelemetry's GenAI conventions name them) and its waits
(for a limiter, a slot, a retry's backoff), so the trace shows running and waiting as the
run report does. Secrets are redacted from every attribute, and export never slows or
fails the run: spans queue in a bounded buffer, and what is dropped is counted and said.

Here, three documents are translated into three languages under a limit of four LLM calls
at once: nine calls want to run, so five of them wait for the limiter, and the trace shows
it. Arize Phoenix (https://github.com/Arize-ai/phoenix) draws it like this:

    cookbook/images/10_phoenix_trace.png  (the trace view: spans nested, LLM calls with tokens)

To watch it yourself (with the ``otel`` extra: ``pip install 'flowkit[otel]'``):

    pip install arize-phoenix && phoenix serve            # in another shell; UI on :6006
    PHOENIX_COLLECTOR_ENDPOINT=http://localhost:6006 python cookbook/10_watch_a_run_in_phoenix.py

then open http://localhost:6006 (its "default" project). Without Phoenix, the chapter prints
the same span tree here. ``OTEL_EXPORTER_OTLP_ENDPOINT`` works too (``Runner(otel=True)``),
for Jaeger, Tempo, Langfuse, Honeycomb or an OpenTelemetry Collector.

Run: python cookbook/10_watch_a_run_in_phoenix.py
"""

from __future__ import annotations

import os

import flowkit as fk
from flowkit.otel import OtelExport
from nodes.llm import ParallelLLMNode, fake_translation

DOCUMENTS = {
    "intro.md": "flowkit runs batches of LLM calls in parallel, within limits.",
    "limits.md": "A limit is declared once and shared by every node that uses it.",
    "resume.md": "A run that stops can resume where it left off.",
}
LANGUAGES = ["French", "German", "Spanish"]


class Translate(ParallelLLMNode):
    """One LLM call per (document, language)."""

    async def prep_async(self, shared):
        return [(name, lang) for name in shared["documents"] for lang in shared["languages"]]

    async def exec_async(self, job):
        name, language = job
        text = DOCUMENTS[name]
        return await self.llm.chat(
            text,
            system=f"Translate into {language}; reply with the translation only.",
            simulate=lambda: fake_translation(text, language),
        )

    async def post_async(self, shared, prep_res, exec_res_list):
        shared["translations"] = dict(zip(prep_res, exec_res_list, strict=True))


class Collect(fk.AsyncNode):
    async def prep_async(self, shared):
        return shared["translations"]

    async def exec_async(self, translations):
        return len(translations)

    async def post_async(self, shared, prep_res, exec_res):
        print(f"{exec_res} translations done")


def build() -> fk.AsyncFlow:
    translate = Translate(name="translate")
    translate >> Collect(name="collect")
    return fk.AsyncFlow(start=translate, name="translate_documents")


def print_tree(spans) -> None:
    """The span tree as a tracing UI draws it: each span under its parent, with its time."""
    by_parent: dict[int | None, list] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent else None
        by_parent.setdefault(parent, []).append(span)

    def show(parent: int | None, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start_time):
            ms = (span.end_time - span.start_time) / 1e6
            tokens = span.attributes.get("gen_ai.usage.output_tokens")
            extra = f"  ({tokens} output tokens)" if tokens is not None else ""
            print(f"{'  ' * depth}{span.name}  {ms:.0f} ms{extra}")
            show(span.context.span_id, depth + 1)

    show(None, 0)


def main() -> None:
    phoenix = os.environ.get("PHOENIX_COLLECTOR_ENDPOINT")
    memory = None
    if phoenix:
        export = OtelExport(endpoint=phoenix)
    else:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        memory = InMemorySpanExporter()
        export = OtelExport(exporter=memory)
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=4)}, otel=export, progress=False)
    runner.run(build(), {"documents": list(DOCUMENTS), "languages": LANGUAGES})
    stats = export.last
    assert stats is not None
    print(f"exported {stats.exported} spans, lost {stats.lost}")
    if memory is not None:
        print_tree(memory.get_finished_spans())
    else:
        print(f"open {phoenix} (the default project) to see the trace")


if __name__ == "__main__":
    main()
