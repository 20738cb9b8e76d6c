"""Privacy metrics and DP training on hand-made inputs and tiny models (no e-mail text is printed)."""

import numpy as np
import pytest
import torch

from w2strust import models
from w2strust.config.schema import TrainConfig
from w2strust.properties import privacy_metrics as pm
from w2strust.training.causal_lm import LMOptions, train_causal_lm

CPU = torch.device("cpu")


def test_suffix_match_on_hand_made_token_sequences():
    true = np.array([[5, 6, 7, 8], [1, 2, 3, 4], [9, 9, 9, 9]])
    generated = np.array([[5, 6, 7, 8],  # all four reproduced
                          [1, 0, 3, 0],  # positions 0 and 2 right
                          [0, 9, 9, 9]])  # an early miss does not hide the three later matches
    assert pm.suffix_match(generated, true).tolist() == [1.0, 0.5, 0.75]
    # a shifted copy is not a reproduction at the right positions
    assert pm.suffix_match(np.array([[6, 7, 8, 0]]), np.array([[5, 6, 7, 8]])).tolist() == [0.0]
    with pytest.raises(ValueError):
        pm.suffix_match(np.zeros((2, 3)), np.zeros((2, 4)))


def test_mia_auc_is_half_for_identical_and_one_for_separated_scores():
    rng = np.random.default_rng(0)
    same = rng.normal(size=500)
    assert pm.roc_auc(same, same.copy()) == pytest.approx(0.5)
    assert pm.roc_auc(rng.normal(size=20000), rng.normal(size=20000)) == pytest.approx(0.5, abs=0.01)
    members, nonmembers = rng.normal(5, 1, 300), rng.normal(-5, 1, 300)
    assert pm.roc_auc(members, nonmembers) == pytest.approx(1.0)
    assert pm.tpr_at_fpr(members, nonmembers, 0.01) == pytest.approx(1.0)
    assert pm.roc_auc(nonmembers, members) == pytest.approx(0.0)
    assert pm.tpr_at_fpr(same, same.copy(), 0.01) <= 0.05


def test_tpr_at_low_fpr_sees_every_roc_point_when_scores_tie():
    """scikit-learn's roc_curve drops collinear points by default; with ties one of them is the answer (here the
    threshold 2.0: FPR 1%, TPR 20%, which the default curve reported as 10%)."""
    members = np.array([3.0, 2.0, 1.5] + [-20.0] * 7)
    nonmembers = np.array([2.0, 1.5] + [-9.0] * 98)
    assert pm.tpr_at_fpr(members, nonmembers, 0.01) == pytest.approx(0.2)


def test_mia_metrics_names_and_calibrated_scores():
    lp_members = [np.full(10, -0.1), np.full(12, -0.2)]
    lp_out = [np.full(10, -3.0), np.full(12, -2.5)]
    texts = ["a b c d e f g", "h i j k l m n o"]
    m = pm.mia_metrics(pm.membership_scores(lp_members, texts), pm.membership_scores(lp_out, texts))
    for key in ("mia_auc", "mia_tpr_at_1fpr", "mia_auc_zlib", "mia_auc_mink"):
        assert m[key] == pytest.approx(1.0), key
    # zlib calibration divides the loss by the text's compressed size: same loss, less compressible = lower ratio
    r = pm.zlib_ratio(np.array([2.0, 2.0]), ["aaaaaaaaaaaaaaaaaaaa", "q8#kZ!m2@x9$Lp0&w3^r"])
    assert r[0] > r[1]
    assert pm.min_k_score([np.array([-1.0, -5.0, -0.1, -0.2, -0.3])], k=0.2).tolist() == [-5.0]
    assert pm.perplexity([np.log(np.full(4, 0.5))]) == pytest.approx(2.0)


def test_dp_epsilon_matches_opacus_accountant_for_same_steps_rate_and_noise():
    from opacus.accountants import RDPAccountant

    model, tok = models.build_causal_lm("tiny-gpt-neox")
    texts = [f"line {i} of a synthetic training text about weather and trains" for i in range(40)]
    tcfg = TrainConfig(lr=1e-3, epochs=2, batch_size=8, max_length=24)
    _, log = train_causal_lm(model, tok, texts, tcfg, LMOptions(delta=1e-4, max_grad_norm=0.5), epsilon=3.0, seed=0,
                             device=CPU)
    assert log["dp"] and log["sample_rate"] == pytest.approx(8 / 40) and log["steps"] == 2 * 5
    acc = RDPAccountant()
    acc.history = [(log["noise_multiplier"], log["sample_rate"], log["steps"])]
    assert log["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-4), rel=1e-9)
    assert 2.5 < log["epsilon"] <= 3.0 + 1e-6  # Opacus calibrates σ to spend (just under) the target
    # more noise for a smaller budget
    _, strict = train_causal_lm(models.build_causal_lm("tiny-gpt-neox")[0], tok, texts, tcfg,
                                LMOptions(delta=1e-4, max_grad_norm=0.5), epsilon=0.5, seed=0, device=CPU)
    assert strict["noise_multiplier"] > log["noise_multiplier"] and strict["epsilon"] <= 0.5 + 1e-6


def test_an_empty_poisson_batch_is_a_noise_only_step_the_accountant_counts():
    """Batch size 1 over 12 rows: q = 1/12, so about a third of the Poisson batches are empty (seed 0: 3 of 12).
    DPOptimizer.step() on an empty batch used to raise Opacus' "Per sample gradient is not initialized" ValueError."""
    from opacus.accountants import RDPAccountant

    model, tok = models.build_causal_lm("tiny-gpt-neox")
    texts = [f"line {i} of a synthetic text" for i in range(12)]
    tcfg = TrainConfig(lr=1e-3, epochs=1, batch_size=1, max_length=16)
    _, log = train_causal_lm(model, tok, texts, tcfg, LMOptions(delta=1e-4), epsilon=3.0, seed=0, device=CPU)
    assert log["steps"] == 12 and len(log["curve"]) < 12  # some batches were empty, every step ran
    acc = RDPAccountant()
    acc.history = [(log["noise_multiplier"], log["sample_rate"], 12)]
    assert log["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-4), rel=1e-9)  # the empty steps are counted


def test_an_epsilon_no_noise_can_reach_is_a_one_line_error_naming_the_fix(monkeypatch):
    """RDP at δ = 1e-5 cannot certify ε ≈ 0.01 at any σ: Opacus' search raised a bare ValueError (a "bug" to the CLI).
    Its search takes ~30 s to give up (σ doubled up to 1e6), so the test makes it give up at once, with its message."""
    import opacus.accountants.utils

    from w2strust.errors import W2SError

    def too_low(**kwargs):
        raise ValueError("The privacy budget is too low.")

    monkeypatch.setattr(opacus.accountants.utils, "get_noise_multiplier", too_low)
    model, tok = models.build_causal_lm("tiny-gpt-neox")
    texts = [f"line {i} of a synthetic text" for i in range(8)]
    with pytest.raises(W2SError, match=r"no noise multiplier spends only ε=0.0123 .*raise the stage's lambda_\* \(ε\)"):
        train_causal_lm(model, tok, texts, TrainConfig(lr=1e-3, epochs=1, batch_size=4, max_length=16),
                        LMOptions(delta=1e-5), epsilon=0.0123, seed=0, device=CPU)


def test_canary_is_extracted_more_without_dp_than_with_dp():
    """A synthetic secret repeated in D_W: non-DP fine-tuning memorises it, DP (ε = 1) much less (fixed seed)."""
    canary = "the access code of the vault is 7 3 9 1 4 2 8 6"
    filler = ["meeting moved to thursday afternoon please confirm", "gas prices went up again this week",
              "the report is attached for your review", "lunch is on the third floor today"]
    texts = [f"{filler[i % 4]} . {canary}" if i % 2 == 0 else f"{filler[i % 4]} and more notes {i}" for i in range(32)]
    tcfg = TrainConfig(lr=1e-2, epochs=12, batch_size=8, max_length=32)
    opts = LMOptions(freeze_embeddings=False, max_grad_norm=1.0, delta=1e-3)
    rates = {}
    for eps in (0.0, 1.0):
        torch.manual_seed(0)
        model, tok = models.build_causal_lm("tiny-gpt-neox")
        model, _ = train_causal_lm(model, tok, texts, tcfg, opts, epsilon=eps, seed=0, device=CPU)
        prefix = len(tok(f"{filler[0]} . the access code of the vault is", add_special_tokens=False)["input_ids"])
        rates[eps] = pm.extraction(model, tok, [texts[0]], prefix, 8, 8, CPU).mean()
    assert rates[0.0] >= 0.75, rates
    assert rates[1.0] < rates[0.0] - 0.4, rates


def test_greedy_continue_returns_exactly_n_tokens_per_prompt():
    model, tok = models.build_causal_lm("tiny-gpt-neox")
    out = pm.greedy_continue(model, tok, [[101, 2000, 2001], [101, 2002]], 5, 2, CPU)
    assert [len(o) for o in out] == [5, 5]


def test_email_pattern_finds_addresses_only():
    hits = pm.EMAIL_RE.findall("write to jane.doe@example.com or j@x.org, not to foo@bar")
    assert hits == ["jane.doe@example.com", "j@x.org"]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_the_trainer_logs_the_loss_over_all_its_rows_before_and_after(optimizer):
    texts = [f"note {i}: the shuttle leaves at {i % 5 + 7} o'clock from gate {i % 3}" for i in range(24)]
    tcfg = TrainConfig(lr=1e-2 if optimizer == "adamw" else 0.5, epochs=6, batch_size=8, max_length=24)
    model, tok = models.build_causal_lm("tiny-gpt-neox")
    from w2strust.training.causal_lm import mean_row_loss, per_row_loss, tokenize

    ids, mask = tokenize(tok, texts, 24)
    with torch.no_grad():
        untrained = float(per_row_loss(model.eval(), ids, mask).mean())
    model, log = train_causal_lm(model, tok, texts, tcfg, LMOptions(freeze_embeddings=False, optimizer=optimizer),
                                 epsilon=0.0, seed=0, device=CPU)
    assert log["lm_options"]["optimizer"] == optimizer
    assert log["train_loss_before"] == pytest.approx(untrained, rel=1e-6)
    assert log["train_loss_after"] == pytest.approx(mean_row_loss(model, ids, mask, 5, "fp32", CPU), rel=1e-6)
    assert log["train_loss_after"] < 0.9 * log["train_loss_before"]  # 24 repetitive rows, 18 steps: it learns


def test_an_unknown_optimizer_is_refused_with_the_choices():
    from w2strust.config.build import build_config
    from w2strust.errors import W2SError

    with pytest.raises(W2SError, match="extra.optimizer must be one of adamw, sgd, got adam"):
        build_config("privacy", "smoke", overrides={"extra": {"optimizer": "adam"}})


def test_token_nll_equals_log_softmax_of_the_next_token_and_token_logprobs_uses_it():
    from w2strust.training.causal_lm import token_nll

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 50, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 50, (3, 7), generator=g)
    expected = -torch.log_softmax(logits, -1)[:, :-1].gather(2, ids[:, 1:, None])[..., 0]  # position t predicts t+1
    got = token_nll(logits.float(), ids)
    assert got.shape == (3, 6)
    assert torch.allclose(got.double(), expected, atol=1e-5)

    model, tok = models.build_causal_lm("tiny-gpt-neox")
    texts = ["a short line", "a somewhat longer line of plain words here"]
    lps = pm.token_logprobs(model, tok, texts, 16, 2, CPU)
    for text, lp in zip(texts, lps, strict=True):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            alone = -token_nll(model(**enc).logits, enc["input_ids"])[0]
        assert np.allclose(lp, alone.numpy(), atol=1e-4)  # padding the shorter row changes nothing of its tokens


class _Memoriser(torch.nn.Module):
    """A causal LM that has memorised ``seqs`` exactly: greedy decoding continues a prompt found in one of them."""

    def __init__(self, seqs: list[list[int]], pad: int):
        super().__init__()
        self.seqs, self.pad = seqs, pad

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **_):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            p = [t for t, m in zip(ids, mask, strict=True) if m]
            cont = next((s[i + len(p):i + len(p) + max_new_tokens] for s in self.seqs
                         for i in range(len(s) - len(p) + 1) if s[i:i + len(p)] == p), [])
            rows.append(ids + cont + [self.pad] * (max_new_tokens - len(cont)))
        return torch.tensor(rows)


def _byte_level_bpe(corpus: list[str]):
    """A small GPT-2-style byte-level BPE tokenizer (a lone trailing space is a token of its own, as in SmolLM2)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tmodels
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(tmodels.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus * 20, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>"],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<pad>")


def test_pii_completion_prompts_are_the_training_tokens_before_the_address():
    filler = " ".join(f"word{i}" for i in range(60))
    texts = ["From: the trading desk\nTo: jane.doe@example.com\nSubject: numbers for the quarter are attached",
             "Hello team, please forward the file to bob.smith@example.org before noon on friday",
             f"Memo header line\n{filler}\nCc: late.address@example.net"]
    tok = _byte_level_bpe(texts)
    seqs = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    model = _Memoriser(seqs, tok.pad_token_id)
    # a model that reproduces its training text completes every address it saw; the third one lies past the
    # training window (max_length tokens) and is left out
    hits = pm.pii_completion(model, tok, texts, context_tokens=8, max_items=10, batch_size=2, device=CPU,
                             max_length=40)
    assert hits.tolist() == [1.0, 1.0]
    assert len(pm.pii_completion(model, tok, texts, 8, 10, 2, CPU)) == 3  # no window given: every address
