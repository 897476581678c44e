"""TRL integration: the personal reward inside GRPOTrainer, personalized DPO pairs inside DPOTrainer (offline)."""

from __future__ import annotations

import numpy as np
import pytest

from personalign.bounds.bounded import BoundedPolicy
from personalign.bounds.policy import policy_from_dict
from personalign.data.synthetic import generate_population
from personalign.errors import ConfigError
from personalign.features import HashingEncoder, PairFeaturizer
from personalign.integrations import PersonalReward
from personalign.integrations.dpo import load_pairs, personalized_pairs, write_pairs
from personalign.integrations.trl import completion_text, prompt_text, reward_function
from personalign.models import LowRankBT

INSULT = "Honestly, this is a stupid question and you should be embarrassed."
PROMPT = "How do I keep basil fresh?"
CANDS = [
    "Short answer: keep it in water on the counter.",
    "Certainly. The following considerations apply. Basil should be stored at room temperature in water, "
    "and the leaves should be kept dry. I trust this information proves useful.",
    "Okay, so here's the thing. Stick it in a glass of water like flowers lol. Hope that helps!",
    INSULT + " Put it in water.",
]


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_lm(path) -> None:
    """A 1-layer Llama with a 400-token byte-level BPE trained here: TRL trainers run a step in well under a second."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    tk.train_from_iterator(
        [PROMPT, *CANDS] * 5,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=specials,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<|pad|>", eos_token="<|end|>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    lm = LlamaForCausalLM(cfg)
    lm.generation_config.pad_token_id = tok.pad_token_id
    lm.generation_config.eos_token_id = tok.eos_token_id
    lm.save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_lm")
    build_tiny_lm(path)
    return path


@pytest.fixture(scope="module")
def model():
    data = generate_population(persons=40, comparisons_per_person=40, seed=0)
    return LowRankBT(rank=4, featurizer=PairFeaturizer(HashingEncoder(256)), random_state=0).fit(data)


@pytest.fixture(scope="module")
def bounded(model):
    pol = policy_from_dict(
        {
            "name": "test",
            "constraints": [
                {
                    "name": "no_insults",
                    "scorer": {"type": "regex", "patterns": ["stupid", "idiot"]},
                    "threshold": 0,
                    "direction": "max",
                }
            ],
            "trust_region": {"rho": 2.0},
        }
    )
    return BoundedPolicy(model, pol)


def _two_persons(model) -> tuple[str, str]:
    """Two trained persons whose rankings of CANDS differ most."""
    users = list(model.user_units_)[:20]
    S = np.stack([model.score([u] * len(CANDS), PROMPT, CANDS) for u in users])
    best = S[:, :3].argmax(1)
    for i in range(len(users)):
        for j in range(i + 1, len(users)):
            if best[i] != best[j]:
                return users[i], users[j]
    pytest.fail("no two persons prefer different candidates")


# ---------------------------------------------------------------------------------------------- text handling
def test_text_extraction_standard_and_conversational():
    conv = [
        {"role": "system", "content": "You talk to u01."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Q?"},
    ]
    assert prompt_text(conv) == "Q?"
    assert prompt_text("Q?") == "Q?"
    assert completion_text([{"role": "assistant", "content": "A."}]) == "A."
    assert completion_text("A.") == "A."


# ---------------------------------------------------------------------------------------------- reward function
def test_reward_function_matches_model_and_is_personal(model):
    u1, u2 = _two_persons(model)
    f = reward_function(model)
    assert f.__name__ == "personalign"
    prompts = [PROMPT] * 6
    comps = CANDS[:3] * 2
    users = [u1] * 3 + [u2] * 3
    got = np.asarray(f(prompts=prompts, completions=comps, user_id=users, trainer_state=None))
    want = model.score(users, prompts, comps)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert got[:3].argmax() != got[3:].argmax()  # the two persons prefer different answers
    # conversational format gives the same values
    conv_p = [[{"role": "system", "content": "persona"}, {"role": "user", "content": PROMPT}]] * 6
    conv_c = [[{"role": "assistant", "content": c}] for c in comps]
    np.testing.assert_allclose(f(prompts=conv_p, completions=conv_c, user_id=users), got)
    # a custom person column
    g = reward_function(model, user_column="person")
    np.testing.assert_allclose(g(prompts=prompts, completions=comps, person=users), got)
    with pytest.raises(ConfigError, match="user_id"):
        f(prompts=prompts, completions=comps)


def test_bounded_reward_function_ranks_violations_last_for_everyone(model, bounded):
    f = reward_function(model, policy=bounded)
    assert f.__name__ == "personalign_bounded"
    logged = {}
    for u in list(model.user_units_)[:15] + ["someone-new"]:
        r = np.asarray(
            f(
                prompts=[PROMPT] * 4,
                completions=CANDS,
                user_id=[u] * 4,
                log_metric=lambda k, v: logged.__setitem__(k, v),
            )
        )
        assert r[3] < r[:3].min()  # the insult loses to every clean answer, whoever asks
        assert np.all((r[:3] >= 2.0) & (r[:3] <= 3.0)) and 0.0 <= r[3] <= 1.0
    assert logged["personalign/violation_rate"] == pytest.approx(0.25)
    # an adversarial person who loves the insult still cannot make it win
    pr = PersonalReward(model, bounded)
    w = model.prior().mean.copy()
    s, g = model.basis(PROMPT, CANDS)
    w_adv = w + 50.0 * np.linalg.lstsq(g, np.eye(4)[3] - 0.25, rcond=None)[0]
    model.add_user("adversary", type(model.prior())(w_adv, model.prior().cov, 0))
    try:
        d = pr.evaluate(["adversary"] * 4, PROMPT, CANDS)
        assert int(np.argmax(d["personal"])) == 3  # left alone, this person would pick the insult
        assert pr.choose_index(d) != 3 and not d["allowed"][3]
    finally:
        model.added_.pop("adversary")


def test_presets_work_wherever_a_policy_is_accepted(model):
    f = reward_function(model, policy="rules")
    assert f.__name__ == "personalign_bounded"
    u = list(model.user_units_)[0]
    r = np.asarray(f(prompts=[PROMPT] * 4, completions=CANDS, user_id=[u] * 4))
    assert r[3] < r[:3].min() and r[3] <= 1.0  # the rules preset blocks the insult
    pairs = personalized_pairs(model, [u], candidates={PROMPT: CANDS}, policy="rules", pairs_per_prompt=3)
    assert INSULT + " Put it in water." not in set(pairs["chosen"])
    with pytest.raises(ConfigError, match="rules"):  # an unknown name lists the presets
        reward_function(model, policy="no-such-preset")


# ---------------------------------------------------------------------------------------------- GRPO
def test_grpo_trainer_runs_with_personal_reward(model, bounded, tiny_lm, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    users = list(model.user_units_)[:2]
    ds = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": p}], "user_id": u}
            for p in (PROMPT, "Tell me a story")
            for u in users
        ]
    )
    f = reward_function(model, policy=bounded)
    seen: list[tuple[list, list]] = []

    def spy(prompts, completions, **kw):
        seen.append((list(kw["user_id"]), f(prompts=prompts, completions=completions, **kw)))
        return seen[-1][1]

    spy.__name__ = f.__name__
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        report_to="none",
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(model=str(tiny_lm), reward_funcs=spy, args=args, train_dataset=ds)
    trainer.train()
    assert len(seen) == 2 and all(set(u) <= set(users) for u, _ in seen)
    logs = [h for h in trainer.state.log_history if "rewards/personalign_bounded/mean" in h]
    assert len(logs) == 2
    for h, (_, r) in zip(logs, seen, strict=False):
        assert h["rewards/personalign_bounded/mean"] == pytest.approx(float(np.mean(r)), rel=1e-5)
    assert all(2.0 <= v <= 3.0 or 0.0 <= v <= 1.0 for _, r in seen for v in r)


# ---------------------------------------------------------------------------------------------- DPO
def test_personalized_pairs_differ_by_person_and_never_choose_harm(model, bounded):
    u1, u2 = _two_persons(model)
    df = personalized_pairs(model, [u1, u2], candidates={PROMPT: CANDS}, policy=bounded, pairs_per_prompt=3)
    assert set(df.columns) >= {"user_id", "prompt", "chosen", "rejected", "margin"}
    assert (df["chosen"] != INSULT + " Put it in water.").all()
    assert (df["margin"] > 0).all()
    ch = df.groupby("user_id")["chosen"].first()
    assert ch[u1] != ch[u2]
    # every person rejects the insult (it ranks last for all of them)
    assert df.groupby("user_id")["rejected"].apply(lambda s: INSULT + " Put it in water." in set(s)).all()
    # without the policy, an adversarial person's pairs would choose the insult
    assert len(df) == 6


def test_dpo_trainer_runs_on_exported_pairs(model, bounded, tiny_lm, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    users = list(model.user_units_)[:3]
    df = personalized_pairs(
        model,
        users,
        candidates={PROMPT: CANDS, "Any tips?": CANDS[:3]},
        policy=bounded,
        system_message="You are answering person {user_id}; follow their preferences.",
        conversational=True,
    )
    assert df["prompt"].iloc[0][0]["role"] == "system" and users[0] in df["prompt"].iloc[0][0]["content"]
    for fmt, name in (("jsonl", "pairs.jsonl"), ("parquet", "pairs.parquet"), ("hf", "pairs_ds")):
        out = write_pairs(df, tmp_path / name, format=fmt)
        ds = load_pairs(out)
        assert ds.num_rows == len(df) and set(ds.column_names) >= {"prompt", "chosen", "rejected", "user_id"}
    lm = AutoModelForCausalLM.from_pretrained(str(tiny_lm))
    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    before = {k: v.detach().clone() for k, v in lm.named_parameters()}
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        per_device_train_batch_size=2,
        max_steps=1,
        report_to="none",
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    trainer = DPOTrainer(
        model=lm, args=args, train_dataset=load_pairs(tmp_path / "pairs.jsonl"), processing_class=tok
    )
    trainer.train()
    assert trainer.state.global_step == 1
    assert any(not np.allclose(before[k].numpy(), v.detach().numpy()) for k, v in lm.named_parameters())
    assert np.isfinite(trainer.state.log_history[0]["loss"])
