#!/usr/bin/env bash
# The CUDA path on the phantom, in one run on a GPU machine: a conditional 3D LDM (KL autoencoder
# then latent diffusion, bf16 mixed precision), its samples per class, the 3D sampling fast path
# with and without sliding-window decoding, and 2D pixel-diffusion training and sampling speed.
#
#   bash benchmarks/cuda_phantom.sh PREP3D PREP2D ALEXNET_WEIGHTS OUT
#
# PREP3D / PREP2D: prepared datasets ('uterosynth prepare'); OUT receives logs, samples (tar),
# sample grids and BENCHMARKS.md sections, packed into OUT/results.tgz. Time budgets are in minutes of training.
set -uo pipefail
PREP3D=$1 PREP2D=$2 WEIGHTS=$3 OUT=$4
AE_MIN=${AE_MIN:-1.5} LDM_MIN=${LDM_MIN:-2.5} DDPM_MIN=${DDPM_MIN:-0.5}
VARIANTS3D=${VARIANTS3D:-default,fp32,bf16,tiled} DECODE_SIZE=${DECODE_SIZE:-256,256,64}
VARIANTS2D=${VARIANTS2D:-default,fp32,bf16,no_channels_last,compile} WRITE=${WRITE:---write}
W=$(mktemp -d)
DEST=$OUT OUT=$W/results   # everything lands in one archive, DEST/results.tgz, refreshed after each stage
mkdir -p "$OUT" "$DEST"
pack() { tar -C "$OUT" -czf "$DEST/.results.tgz" . && mv "$DEST/.results.tgz" "$DEST/results.tgz"; }
log() { pack; echo "[$(date +%T)] $*" | tee -a "$OUT/steps.log"; }
(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU") | tee "$OUT/gpu.txt"

log "3D autoencoder"
uterosynth train autoencoder --config configs/ae3d_demo.yaml --data "$PREP3D" --out "$W/ae3d" \
  --set train.max_minutes="$AE_MIN" --set train.steps=100000 --set train.batch_size=8 \
  --set train.precision=bf16 --set train.log_every=100 --set train.val_every=500 --set train.checkpoint_every=1000 \
  --set perceptual.weights="$WEIGHTS" --set perceptual.random_init=false --json 2>&1 | tail -n 3 | tee "$OUT/ae3d.txt"
cp "$W/ae3d/metrics.jsonl" "$OUT/ae3d_metrics.jsonl"
uterosynth encode --model "$W/ae3d" --data "$PREP3D" --out "$W/latents3d" --json 2>&1 | tail -n 1

log "3D latent diffusion"
uterosynth train diffusion --config configs/ldm3d_demo.yaml --data "$PREP3D" --out "$W/ldm3d" \
  --set autoencoder="$W/ae3d" --set latents="$W/latents3d" --set train.max_minutes="$LDM_MIN" \
  --set train.batch_size=32 --set train.precision=bf16 --set train.checkpoint_every=1000 \
  --set train.val_every=1000 --set train.log_every=100 --json 2>&1 | tail -n 3 | tee "$OUT/ldm3d.txt"
cp "$W/ldm3d/metrics.jsonl" "$OUT/ldm3d_metrics.jsonl"

log "3D samples per class"
uterosynth sample --model "$W/ldm3d" --per-class 6 --sampler dpmpp --steps 20 \
  --guidance orientation=3,field_strength=1.5 --seed 0 --out "$W/samples3d" --json 2>&1 | tail -n 1 | tee "$OUT/samples3d.txt"
tar -C "$W" -czf "$DEST/samples3d.tgz" samples3d

log "3D sampling fast path and tiled decoding"
python3 benchmarks/bench_sampling_runtime.py --model "$W/ldm3d" --n 32 --batch 16 --variants "$VARIANTS3D" \
  --budget-mb 256 --decode-size "$DECODE_SIZE" $WRITE 2>&1 | tee "$OUT/bench3d.txt" | tail -n 12

log "2D pixel diffusion training, fp32 then bf16"
for p in fp32 bf16; do
  uterosynth train diffusion --config configs/ddpm2d.yaml --data "$PREP2D" --out "$W/ddpm2d_$p" \
    --set train.max_minutes="$DDPM_MIN" --set train.precision=$p --set train.num_workers=4 \
    --set train.log_every=20 --set train.val_every=100000 --set train.checkpoint_every=100000 --json 2>&1 \
    | tail -n 1 | tee "$OUT/ddpm2d_$p.txt"
done

log "2D sampling fast path"
python3 benchmarks/bench_sampling_runtime.py --model "$W/ddpm2d_bf16" --n 64 --batch 32 \
  --variants "$VARIANTS2D" $WRITE 2>&1 | tee "$OUT/bench2d.txt" | tail -n 10
cp docs/BENCHMARKS.md "$OUT/BENCHMARKS.md"
cp "$W"/ldm3d/images/*.png "$OUT/" 2>/dev/null
log "done"
