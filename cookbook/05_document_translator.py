"""Chapter 5: a document translator that saves files.

The translator from chapter 2, plus a second parallel node that writes each translation
to disk with aiofiles. ``nodes.files`` makes that safe: ``safe_path`` turns a language
name into a harmless file name inside the output folder (no ``../``), and
``write_text_atomic`` writes a temporary file and renames it, so a crash never leaves half
a translation behind.

The bundled translation flow does the same for real markdown documents, protecting code,
links and front matter and splitting long documents into chunks; it closes the chapter.

Run: python cookbook/05_document_translator.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import flowkit as fk
from flows.translation import translate_document
from nodes.files import safe_path, write_text_atomic
from nodes.llm import ParallelLLMNode, fake_translation

DOCUMENT = """# Release notes

Translations now run in parallel. Install with `pip install flowkit`.

```python
print("code blocks are never translated")
```
"""


class DocumentTranslator(ParallelLLMNode):
    async def prep_async(self, shared):
        return [(shared["document"], language) for language in shared["languages"]]

    async def exec_async(self, data_tuple):
        doc, language = data_tuple
        print(f"Translating to {language}...")
        translation = await self.llm.chat(
            doc,
            system=f"Translate this Markdown into {language}. Reply with the translation only.",
            simulate=lambda: fake_translation(doc, language),
        )
        return {"language": language, "translation": translation}

    async def post_async(self, shared, prep_res, exec_res_list):
        shared["translations"] = exec_res_list


class SaveTranslations(fk.AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return [(shared["output"], r["language"], r["translation"]) for r in shared["translations"]]

    async def exec_async(self, item):
        output, language, text = item
        return await write_text_atomic(
            safe_path(output, f"translation_{language.lower()}.md"), text
        )

    async def post_async(self, shared, prep_res, paths):
        for path in paths:
            print(f"Saved {path}")


def main(output: Path) -> None:
    translate = DocumentTranslator()
    translate >> SaveTranslations()
    shared = {"document": DOCUMENT, "languages": ["Spanish", "French"], "output": output}
    fk.Runner(limits={"llm": fk.Limit(max_concurrency=4)}).run(
        fk.AsyncFlow(start=translate), shared
    )

    source = output / "notes.md"
    source.write_text(DOCUMENT, encoding="utf-8")
    result = translate_document(source, ["German", "Japanese"], output / "bundled")
    for language, path in result.saved.items():
        print(f"The bundled flow saved {language}: {path}")
    print((output / "bundled" / "notes.German.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(Path(folder))
