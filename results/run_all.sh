#!/usr/bin/env bash
# Reproduces every folder under results/ (run from the project root; real data in ../shared/data).
# Features are cached on disk (PERSONALIGN_CACHE or ~/.cache/personalign/features): a second run encodes nothing.
set -u
D=../shared/data
P=.venv/bin/personalign
# the log goes beside --out while the command runs (eval replaces --out whole), then into it
run() { out=$1; shift; mkdir -p "$(dirname "$out")"; echo "== $out"; "$P" eval "$@" --out "$out" > "$out.run.log" 2>&1; rc=$?; mv "$out.run.log" "$out/run.log" 2>/dev/null; echo "rc=$rc $out"; }
run results/toxicity      $D/toxicity-perspective-prolific --format toxicity --seeds 5
run results/popquorn      $D/popquorn/offensiveness --format popquorn --seeds 5
run results/synthetic-alpha0.1  synthetic:alpha=0.1,persons=600,comparisons_per_person=40 --seeds 5 --harmless none
run results/synthetic-alpha10   synthetic:alpha=10,persons=600,comparisons_per_person=40 --seeds 5 --harmless none
# the same populations with the items' true attributes as features: isolates the personal model from the encoder
run results/synthetic-alpha0.1-attributes synthetic:alpha=0.1,persons=600,comparisons_per_person=40 --seeds 5 --harmless none --encoder attributes
run results/synthetic-alpha10-attributes  synthetic:alpha=10,persons=600,comparisons_per_person=40 --seeds 5 --harmless none --encoder attributes
# MiniLM with sentence pooling (PairFeaturizer mode "sentences"), the best frozen text features on this population
run results/synthetic-alpha0.1-sentences synthetic:alpha=0.1,persons=600,comparisons_per_person=40 --seeds 5 --harmless none --pair-mode sentences
run results/polis-vtaiwan.uberx $D/polis-opendata/vtaiwan.uberx --format polis --seeds 5 --max-persons 500 --group-col group-id
run results/polis-brexit-consensus $D/polis-opendata/brexit-consensus --format polis --seeds 5 --max-persons 500 --group-col group-id
run results/polis-15-per-hour-seattle $D/polis-opendata/15-per-hour-seattle --format polis --seeds 5 --max-persons 500 --group-col group-id
run results/csc           $D/lewidi2025-multipico-csc/CSC --format lewidi --seeds 5 --merge-prompt
run results/multipico     $D/lewidi2025-multipico-csc/MP --format lewidi --seeds 5 --merge-prompt --max-persons 300
run results/synthetic-alpha0.01 synthetic:alpha=0.01,persons=600,comparisons_per_person=40 --seeds 5 --harmless none
run results/synthetic-alpha1    synthetic:alpha=1,persons=600,comparisons_per_person=40 --seeds 5 --harmless none
# pointwise personal judgments (personal cut-points against the collapsed control)
pw() { out=$1; shift; mkdir -p "$(dirname "$out")"; echo "== $out"; "$P" eval-pointwise "$@" --out "$out" > "$out.run.log" 2>&1; rc=$?; mv "$out.run.log" "$out/run.log" 2>/dev/null; echo "rc=$rc $out"; }
pw results/pointwise/toxicity-rank0 $D/toxicity-perspective-prolific --format toxicity --seeds 5 --rank 0
pw results/pointwise/toxicity-rank2 $D/toxicity-perspective-prolific --format toxicity --seeds 5 --rank 2
pw results/pointwise/popquorn-rank0 $D/popquorn/offensiveness/raw_data.csv --format popquorn --seeds 5 --rank 0
# ConvAbuse: 8 annotators with 1,025-1,736 severity ratings each (the dense regime). Each item's prompt is its own
# conversation context, so pairs of one prompt barely exist: --merge-prompt folds the context into the item text
pw results/pointwise/convabuse-rank0 $D/convabuse --format convabuse --seeds 5 --rank 0
pw results/pointwise/convabuse-rank2 $D/convabuse --format convabuse --seeds 5 --rank 2
run results/convabuse $D/convabuse --format convabuse --seeds 5 --merge-prompt
# the dense regime: up to 1,000 training and 300 test pairs per person (the default caps are 200 and 100)
run results/convabuse-dense $D/convabuse --format convabuse --seeds 5 --merge-prompt --max-train-pairs 1000 --max-test-pairs 300 --models crowd,bt,independent,lowrank,hybrid --active-max-k 0
"$P" audit $D/convabuse --format convabuse --polarity lower --out results/audit/convabuse
