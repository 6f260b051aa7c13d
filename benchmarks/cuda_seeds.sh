#!/usr/bin/env bash
# Training seeds on one GPU, in one run, for the corrected-pipeline results (docs/RESULTS.md):
#   A. the 3D LDM's CPU recipe (the 400-step autoencoder of the CPU run) at training seeds 1 and 2;
#   B. the 3D chain with a longer-trained autoencoder (AE_STEPS at batch 8), its reconstructions
#      judged per class, and three LDM training seeds, each sampled, judged and audited;
#   C. more training seeds of the default demo's 2D pixel recipe (configs/ddpm2d_demo64.yaml).
# Every model trains in fp32 for a fixed number of steps; the jobs share the GPU, so their speeds
# are not benchmarks. Each model is sampled and its samples judged as in docs/RESULTS.md; the
# judges' real-item controls here use the cohorts' own test splits (8 subjects), not a fresh cohort.
#
#   bash benchmarks/cuda_seeds.sh DATA OUT        (from the repository root)
#
# DATA holds the prepared cohorts prepG2 and prepG3, the judges judge2 (2D) and judge2w (the 3D
# LDM's central-slice judge), and the CPU run's 3D autoencoder ae3d and its latents lat3d, as made
# by the commands of docs/RESULTS.md. OUT receives results.tgz (refreshed as jobs finish) and
# steps.log. LIMIT (seconds): no command runs past it (each is started under `timeout` with the
# time left), so the run ends with what was finished. `uterosynth` must be on PATH. The judges are
# read on the GPU machine's torch: a judge without classifier.safetensors (written by an earlier
# version) cannot be rebuilt where that torch is older than the writer's; the script warns.
set -uo pipefail
D=$1 DEST=$2
LIMIT=${LIMIT:-540} AE_STEPS=${AE_STEPS:-1500} LDM_STEPS=${LDM_STEPS:-2500} PIX_STEPS=${PIX_STEPS:-2000}
PIX_SEEDS=${PIX_SEEDS:-"10 11 12 13 14 15"} PER3=${PER3:-50} PER2=${PER2:-64}
W=$(mktemp -d) START=$(date +%s)
OUT=$W/results
mkdir -p "$OUT" "$DEST"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONUNBUFFERED=1
pack() { tar -C "$OUT" -czf "$DEST/.results.$BASHPID.tgz" . 2>/dev/null && mv -f "$DEST/.results.$BASHPID.tgz" "$DEST/results.tgz"; }
log() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$DEST/steps.log"; pack; }
status() {
  local rc=$?
  if [ "$rc" -eq 0 ]; then log "$1"; else log "$1: FAILED or stopped (exit $rc)"; fi
}
keep() { mkdir -p "$OUT/$(basename "$1")" && cp "$1"/summary.json "$1"/metrics.jsonl "$OUT/$(basename "$1")/" 2>/dev/null; }
left() {  # run a command with the seconds left before LIMIT, or not at all
  local t=$(( LIMIT - ($(date +%s) - START) ))
  [ "$t" -gt 5 ] || return 124
  timeout "$t" "$@"
}
RUN="--set train.max_minutes=null --set train.val_every=1000000 --set train.checkpoint_every=1000000 \
  --set train.precision=fp32 --set train.num_workers=0"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no GPU") > "$OUT/gpu.txt"
python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())" >> "$OUT/gpu.txt"

ldm3d() {  # seed autoencoder latents out
  local name; name=$(basename "$4")
  left uterosynth train diffusion --config configs/ldm3d_demo.yaml --data "$D/prepG3" --seed "$1" --out "$4" \
    --set autoencoder="$2" --set latents="$3" --set train.steps="$LDM_STEPS" $RUN > "$4.log" 2>&1
  keep "$4"
  left uterosynth sample --model "$4" --per-class "$PER3" --sampler dpmpp --steps 20 \
    --guidance orientation=7,field_strength=1.5 --seed 100 --out "$4_samples" >> "$4.log" 2>&1
  status "$name: trained and sampled"
}
judge() {  # name judge real --samples=NAME=SET... (only the sets that exist are judged)
  local sets=() a
  for a in "${@:4}"; do [ -f "${a#*=*=}/metadata.jsonl" ] && sets+=("$a"); done
  [ "${#sets[@]}" -gt 0 ] || { log "$1: nothing to judge"; return; }
  left python3 benchmarks/results_fidelity.py --judge "$2" --real "$3" --blur 4 "${sets[@]}" \
    --json "$OUT/$1.json" > "$OUT/$1.md" 2>&1
  status "$1 judged"
}
judge3d() { judge "$1" "$D/judge2w" "$D/prepG3:test" "${@:2}"; }
audit3d() {  # name samples
  left uterosynth audit --train "$D/prepG3" --synthetic "$2" --quantile 0.98 --out "$W/$1" > "$W/$1.log" 2>&1
  local rc=$?
  cp "$W/$1/audit.json" "$OUT/$1.json" 2>/dev/null; tail -n 5 "$W/$1.log" > "$OUT/$1.txt"
  (exit $rc); status "$1 done"
}

track_a() {
  for s in 1 2; do ldm3d "$s" "$D/ae3d" "$D/lat3d" "$W/ldm3dA_s$s" & done; wait
  judge3d fidelity3d_A "--samples=seed 1=$W/ldm3dA_s1_samples" "--samples=seed 2=$W/ldm3dA_s2_samples"
}
track_b() {
  left uterosynth train autoencoder --config configs/ae3d_demo.yaml --data "$D/prepG3" --out "$W/ae3dB" \
    --set train.steps="$AE_STEPS" --set train.batch_size=8 $RUN > "$W/ae3dB.log" 2>&1
  keep "$W/ae3dB"
  left uterosynth encode --model "$W/ae3dB" --data "$D/prepG3" --out "$W/lat3dB" >> "$W/ae3dB.log" 2>&1
  status "3D autoencoder B trained and encoded"
  { left uterosynth evaluate baselines --autoencoder "$W/ae3dB" --real "$D/prepG3:test" --out "$W/baselinesB" \
      >> "$W/ae3dB.log" 2>&1; status "3D autoencoder B reconstructions"
    judge3d fidelity3d_reconB "--samples=recon=$W/baselinesB/reconstruction"; } &
  for s in 0 1 2; do ldm3d "$s" "$W/ae3dB" "$W/lat3dB" "$W/ldm3dB_s$s" & done; wait
  judge3d fidelity3d_B "--samples=seed 0=$W/ldm3dB_s0_samples" "--samples=seed 1=$W/ldm3dB_s1_samples" \
    "--samples=seed 2=$W/ldm3dB_s2_samples"
  for s in 0 1 2; do audit3d "audit3d_B_s$s" "$W/ldm3dB_s${s}_samples" & done; wait
}
track_c() {
  local args=()
  for s in $PIX_SEEDS; do
    ( left uterosynth train diffusion --config configs/ddpm2d_demo64.yaml --data "$D/prepG2" --seed "$s" \
        --out "$W/ddpm64_s$s" --set train.steps="$PIX_STEPS" --set "optimizer.betas=[0.9,0.999]" $RUN \
        > "$W/ddpm64_s$s.log" 2>&1  # beta2 as measured (the preset now uses 0.99)
      keep "$W/ddpm64_s$s"
      left uterosynth sample --model "$W/ddpm64_s$s" --per-class "$PER2" --sampler dpmpp --steps 20 \
        --guidance orientation=5,field_strength=1.5 --seed 100 --out "$W/ddpm64_s${s}_samples" >> "$W/ddpm64_s$s.log" 2>&1
      status "ddpm64_s$s: trained and sampled" ) &
    args+=("--samples=seed $s=$W/ddpm64_s${s}_samples")
  done
  wait
  judge fidelity2d_C "$D/judge2" "$D/prepG2:test" "${args[@]}"
}

log "start: $(tr '\n' ' ' < "$OUT/gpu.txt")"
for j in judge2 judge2w; do
  [ -f "$D/$j/classifier.safetensors" ] || log "warning: $D/$j has no classifier.safetensors; an older torch cannot rebuild it"
done
track_b & track_c & track_a &
wait
for f in "$W"/*.log; do tail -n 20 "$f" > "$OUT/log_$(basename "$f")"; done
log "done"
