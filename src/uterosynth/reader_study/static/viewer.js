/* Image viewer: window/level and zoom/pan on a canvas. Every image, real or synthetic, is drawn
   by draw() below from the served 8-bit PNG: one code path for both sources. */
"use strict";

window.RSViewer = (function () {
  const DEFAULT = { window_center: 127.5, window_width: 255, zoom: 1, pan_x: 0, pan_y: 0 };
  const PRESETS = [
    { name: "as rendered", window_center: 127.5, window_width: 255 },
    { name: "soft tissue", window_center: 110, window_width: 160 },
    { name: "high contrast", window_center: 127.5, window_width: 100 },
    { name: "dark detail", window_center: 70, window_width: 140 },
  ];
  const LIMITS = { window_center: [-255, 510], window_width: [1, 1020], zoom: [0.25, 16],
    pan_x: [-100000, 100000], pan_y: [-100000, 100000] };
  const clamp = (v, [lo, hi]) => Math.max(lo, Math.min(hi, v));

  function create(canvas, source, onChange) {
    const view = Object.assign({}, DEFAULT);
    let preset = 0;
    let drag = null;

    function draw() {
      if (!source.complete || !source.naturalWidth) return;
      const w = source.naturalWidth, h = source.naturalHeight;
      if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(source, 0, 0);
      const img = ctx.getImageData(0, 0, w, h);
      const lut = new Uint8ClampedArray(256);  // clamps to 0-255 and rounds
      const low = view.window_center - view.window_width / 2;
      for (let v = 0; v < 256; v++) lut[v] = ((v - low) / view.window_width) * 255;
      const d = img.data;
      for (let i = 0; i < d.length; i += 4) { const g = lut[d[i]]; d[i] = g; d[i + 1] = g; d[i + 2] = g; }
      ctx.putImageData(img, 0, 0);
      canvas.style.transform = "translate(" + view.pan_x + "px, " + view.pan_y + "px) scale(" + view.zoom + ")";
      onChange(state());
    }

    function set(changes) {
      Object.keys(changes).forEach((k) => { view[k] = clamp(changes[k], LIMITS[k]); });
      draw();
    }

    function state() { return Object.assign({}, view); }
    function reset() { preset = 0; Object.assign(view, DEFAULT); draw(); }
    function usePreset(k) {
      preset = ((k % PRESETS.length) + PRESETS.length) % PRESETS.length;
      set({ window_center: PRESETS[preset].window_center, window_width: PRESETS[preset].window_width });
    }
    function nextPreset() { usePreset(preset + 1); }
    function zoomBy(factor) { set({ zoom: view.zoom * factor }); }

    // Drag: left button sets window (right = wider, down = darker); Shift or other buttons pan.
    canvas.addEventListener("pointerdown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, pan: ev.shiftKey || ev.button !== 0, from: state() };
      canvas.setPointerCapture(ev.pointerId);
      ev.preventDefault();
    });
    canvas.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (drag.pan) set({ pan_x: drag.from.pan_x + dx, pan_y: drag.from.pan_y + dy });
      else set({ window_width: drag.from.window_width + 2 * dx, window_center: drag.from.window_center + dy });
    });
    const end = () => { drag = null; };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
    source.addEventListener("load", draw);

    return { draw: draw, set: set, state: state, reset: reset, usePreset: usePreset, nextPreset: nextPreset,
      zoomBy: zoomBy, presets: PRESETS };
  }

  return { create: create, DEFAULT: DEFAULT, PRESETS: PRESETS };
})();
