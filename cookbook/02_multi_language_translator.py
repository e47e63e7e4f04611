"""Chapter 2: a multi-language translator.

Parallelism over a different axis: one text, many languages. ``prep_async`` returns one
``(text, language)`` pair per language and every translation runs at once, within the
runner's "llm" limit; ``post_async`` collects them by language.

``simulate=`` gives the offline simulated provider a recognisable stand-in reply (each
sentence tagged with its language); a real provider ignores it.

Run: python cookbook/02_multi_language_translator.py
"""

from __future__ import annotations

import flowkit as fk
from nodes.llm import ParallelLLMNode, fake_translation


class ParallelTranslator(ParallelLLMNode):
    async def prep_async(self, shared):
        return [(shared["text"], language) for language in shared["languages"]]

    async def exec_async(self, data_tuple):
        text, language = data_tuple
        translation = await self.llm.chat(
            text,
            system=f"Translate the user's text into {language}. Reply with the translation only.",
            simulate=lambda: fake_translation(text, language),
        )
        return {"language": language, "translation": translation}

    async def post_async(self, shared, prep_res, exec_res_list):
        shared["translations"] = {r["language"]: r["translation"] for r in exec_res_list}
        return "default"


def main() -> None:
    shared = {
        "text": "Parallel processing runs independent work at the same time. It saves waiting.",
        "languages": ["Spanish", "French", "German", "Japanese"],
    }
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=4)})
    runner.run(fk.AsyncFlow(start=ParallelTranslator()), shared)
    for language, translation in shared["translations"].items():
        print(f"{language:>8}: {translation}")
    assert runner.last_run is not None
    print(f"{len(shared['languages'])} translations in {runner.last_run.wall_time:.2f} s")


if __name__ == "__main__":
    main()
