"""The generation cache: re-scoring a model never regenerates.

Every response a backend generates is stored in `<cache dir>/generations.sqlite` (by default
`<workspace>/generations/`) under a key made of

    (model fingerprint, task, sha256 of the prompt, generation settings)

where the fingerprint is `fingerprint.model_fingerprint` (file contents or hub commit), the
prompt is the full text the model sees (chat template and few-shot examples included), and the
settings are the backend, its dtype and lm-eval's normalised generation kwargs (stop strings,
max_gen_toks, sampling; the seed, the batch size and the sample's index only when sampling: a
sampled response depends on where in the seeded random stream its batch drew, so another
batch size draws other samples, while a greedy one is the same in any batch). A checker change,
a new filter or a bootstrap over old runs then costs no model time, and a killed evaluation
keeps what it generated (the store is written every `chunk_size` requests).

`GenerationLM` is the lm-eval model that `harness.run_evaluation` hands to lm-eval for every
model backend. It renders chat prompts with the model's tokenizer itself, so every backend
sees the same prompt text; serves requests from the store; and loads the backend's model
only when some request is missing, so a fully cached re-run loads no model at all.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM

from leafbench.evaluation.fingerprint import FileHashes

DB_NAME = "generations.sqlite"
SAMPLING_ONLY = ("seed", "batch_size")  # settings that change a sampled response, not a greedy one
log = logging.getLogger(__name__)


class GenerationStore:
    """Stored generations, one sqlite row per (fingerprint, task, prompt, settings)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).expanduser().resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")  # concurrent evaluations may share a store
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, model TEXT NOT NULL,"
            " task TEXT, prompt_sha256 TEXT NOT NULL, settings TEXT NOT NULL,"
            " response TEXT NOT NULL, created TEXT NOT NULL)"
        )
        self._db.commit()
        self.file_hashes = FileHashes(self.path)  # the fingerprint memo lives beside them

    @staticmethod
    def key(model: str, task: str | None, prompt_sha256: str, settings: str) -> str:
        return hashlib.sha256(json.dumps([model, task, prompt_sha256, settings]).encode()).hexdigest()

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):  # sqlite's bound-parameter limit
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, response FROM generations WHERE key IN ({marks})", chunk
            )
            found.update(rows.fetchall())
        return found

    def put_many(self, rows: Iterable[tuple[str, str, str | None, str, str, str]]) -> None:
        """Rows of (key, model, task, prompt_sha256, settings, response)."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self._db.executemany(
            "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*row, now) for row in rows],
        )
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        self._db.close()
        self.file_hashes.close()


class GenerationLM(LM):
    """An lm-eval model in front of a backend: cached generations, lazily loaded model.

    `load` builds the backend's lm-eval LM (called at most once, on the first cache miss);
    `tokenizer` is the model's HF tokenizer, used for chat prompts; `settings` are the backend
    settings that change generations (backend name, dtype; seed and batch size, which only
    sampled keys keep), part of every cache key.
    `store=None` generates everything and stores nothing. `hits`, `misses` and `loads` count
    what happened, and land in results.json.
    """

    def __init__(
        self,
        load: Callable[[], LM],
        *,
        tokenizer: Any,
        fingerprint: str,
        settings: Mapping[str, Any],
        store: GenerationStore | None = None,
        max_gen_toks: int = 256,
        chunk_size: int = 512,
    ) -> None:
        super().__init__()
        self._load = load
        self._model: LM | None = None
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.settings = dict(settings)
        self.store = store
        self.max_gen_toks = max_gen_toks
        self.chunk_size = chunk_size
        self.hits = self.misses = self.loads = 0

    @property
    def model(self) -> LM:
        if self._model is None:
            self._model = self._load()
            self.loads += 1
        return self._model

    def close(self) -> None:
        """Release the backend's model (and a vLLM engine's processes and memory)."""
        if self._model is not None:
            close = getattr(self._model, "close", None)
            if callable(close):
                close()
            self._model = None
            import gc

            gc.collect()

    # ------------------------------------------------------------ generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import normalize_gen_kwargs

        keyed = []  # (request with explicit max_gen_toks, key, prompt sha, settings json)
        seen: dict[tuple[str | None, str, str], int] = {}
        for req in requests:
            prompt, gen_kwargs = req.args
            gen_kwargs = {"max_gen_toks": self.max_gen_toks, **gen_kwargs}
            gen = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            settings: dict[str, Any] = {**self.settings, "gen": gen}
            if not gen.get("do_sample"):  # greedy: same prompt, same response
                for name in SAMPLING_ONLY:
                    settings.pop(name, None)
            prompt_sha = hashlib.sha256(prompt.encode()).hexdigest()
            if gen.get("do_sample"):  # the k-th sample of a prompt is its own entry
                occurrence = (req.task_name, prompt_sha, json.dumps(gen, sort_keys=True))
                settings["sample"] = seen[occurrence] = seen.get(occurrence, -1) + 1
            settings_json = json.dumps(settings, sort_keys=True, default=str)
            key = GenerationStore.key(self.fingerprint, req.task_name, prompt_sha, settings_json)
            keyed.append((_with_args(req, (prompt, gen_kwargs)), key, prompt_sha, settings_json))

        cached = self.store.get_many(k for _, k, _, _ in keyed) if self.store else {}
        todo: dict[str, tuple[Any, str, str]] = {}  # one generation per distinct key
        for req, key, prompt_sha, settings_json in keyed:
            if key not in cached:
                todo.setdefault(key, (req, prompt_sha, settings_json))
        self.hits += sum(key in cached for _, key, _, _ in keyed)
        self.misses += len(todo)
        log.info("generation cache: %d of %d requests cached, %d to generate",
                 len(keyed) - len(todo), len(keyed), len(todo))

        pending = list(todo.items())
        for i in range(0, len(pending), self.chunk_size):
            chunk = pending[i : i + self.chunk_size]
            outputs = self.model.generate_until([r for _, (r, _, _) in chunk], disable_tqdm)
            rows = []
            for (key, (req, prompt_sha, settings_json)), text in zip(chunk, outputs, strict=True):
                cached[key] = text
                rows.append((key, self.fingerprint, req.task_name, prompt_sha, settings_json, text))
            if self.store is not None:
                self.store.put_many(rows)
        return [cached[key] for _, key, _, _ in keyed]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self.model.loglikelihood(requests, disable_tqdm)  # not cached: no task uses it

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self.model.loglikelihood_rolling(requests, disable_tqdm)

    # ------------------------------------------------------------ prompts
    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """As lm-eval's HFLM renders chat prompts (system turn dropped if the template
        rejects one), whichever backend generates."""
        import jinja2

        kwargs = {
            "tokenize": False,
            "add_generation_prompt": add_generation_prompt,
            "continue_final_message": not add_generation_prompt,
        }
        try:
            return self.tokenizer.apply_chat_template(chat_history, **kwargs)
        except jinja2.exceptions.TemplateError:
            turns = [m for m in chat_history if m["role"] != "system"]
            return self.tokenizer.apply_chat_template(turns, **kwargs)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer.chat_template if chat_template else None

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def cache_report(self) -> dict[str, Any]:
        return {
            "dir": str(self.store.dir) if self.store else None,
            "hits": self.hits,
            "misses": self.misses,
            "model_loaded": self.loads > 0,
        }


def _with_args(req: Any, args: tuple[str, dict]) -> Any:
    """A copy of an lm-eval `Instance` with other (context, gen_kwargs) arguments."""
    return dataclasses.replace(req, arguments=args)
