// SAMURAI tracking service page: upload, mark objects on frame 0, start a job, follow it (SSE),
// play the overlay and list every job. Plain browser JavaScript, no build step.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const RESULT_LABELS = {
  overlay: "overlay video (mp4)",
  boxes: "boxes per frame (x,y,w,h text)",
  rle: "masks as COCO RLE (json)",
  scores: "scores per frame (csv)",
  masks: "masks as PNG (zip)",
};

const $ = (id) => document.getElementById(id);
const page = {
  video: null,      // VideoOut of the chosen video
  image: null,      // its first frame
  boxes: [],        // [x, y, w, h] in video pixels, one per object
  points: [],       // [x, y] clicks on object 1, video pixels
  labels: [],       // 1 = object, 0 = background
  draft: null,      // box being drawn, canvas pixels
  jobId: null,      // job shown in steps 3 and 4
  events: null,     // EventSource of that job
  pollTimer: null,
};

// ---------------------------------------------------------------------------- access token
// A server that needs a token answers 401; the page asks once and keeps the token in a session
// cookie (same site only), which fetch, <video>, download links and EventSource all send.
let tokenPrompt = null;

function askToken(message) {
  if (!tokenPrompt) {
    tokenPrompt = new Promise((resolve) => {
      $("login").hidden = false;
      $("login-error").textContent = message || "";
      $("token").focus();
      $("login-form").onsubmit = (e) => {
        e.preventDefault();
        const token = $("token").value.trim();
        if (!token) return;
        const secure = location.protocol === "https:" ? "; Secure" : "";
        document.cookie = `samurai_token=${encodeURIComponent(token)}; path=/; SameSite=Strict${secure}`;
        $("token").value = "";
        $("login").hidden = true;
        tokenPrompt = null;
        resolve();
      };
    });
  }
  return tokenPrompt;
}

async function api(method, url, body) {
  let response = await fetch(url, { method, body, credentials: "same-origin" });
  for (let tries = 0; response.status === 401 && tries < 10; tries++) {
    await askToken(tries ? "That token was refused; try again." : "");
    response = await fetch(url, { method, body, credentials: "same-origin" });
  }
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : `${response.status} ${response.statusText}`;
    throw new Error(detail);
  }
  return data;
}

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

// ---------------------------------------------------------------------------- step 1: video
function uploadVideo(file) {
  $("video-error").textContent = "";
  const bar = $("upload-progress");
  bar.hidden = false;
  bar.value = 0;
  const form = new FormData();
  form.append("video", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/videos");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  xhr.onload = async () => {
    bar.hidden = true;
    if (xhr.status === 401) {
      await askToken("Enter the access token to upload.");
      uploadVideo(file);
      return;
    }
    let data = null;
    try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
    if (xhr.status !== 201) {
      $("video-error").textContent = "Upload refused: " + (data && data.detail ? data.detail : xhr.status);
      return;
    }
    await loadVideoList(data.id);
    await chooseVideo(data);
  };
  xhr.onerror = () => {
    bar.hidden = true;
    $("video-error").textContent = "Upload failed: the server could not be reached.";
  };
  xhr.send(form);
}

async function loadVideoList(selectedId) {
  const { videos } = await api("GET", "/api/videos");
  const select = $("previous-videos");
  select.innerHTML = '<option value="">(none)</option>';
  for (const v of videos) {
    const option = document.createElement("option");
    option.value = v.id;
    option.textContent = `${v.filename} (${v.frames} frames, ${v.width}x${v.height})`;
    select.appendChild(option);
  }
  if (selectedId) select.value = selectedId;
}

function chooseVideo(video) {
  page.video = video;
  page.boxes = [];
  page.points = [];
  page.labels = [];
  $("video-info").textContent =
    `${video.filename}: ${video.frames} frames, ${video.width}x${video.height}` +
    (video.fps ? `, ${video.fps.toFixed(1)} fps` : "");
  return new Promise((resolve) => {
    const image = new Image();
    image.onload = () => {
      page.image = image;
      const canvas = $("frame-canvas");
      canvas.width = video.width;
      canvas.height = video.height;
      $("canvas-placeholder").hidden = true;
      redraw();
      resolve();
    };
    image.onerror = () => {
      $("video-error").textContent = "The first frame could not be loaded.";
      resolve();
    };
    image.src = video.first_frame_url;
  });
}

// ---------------------------------------------------------------------------- step 2: marks
function toVideo(event) {
  const canvas = $("frame-canvas");
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width;
  const y = (event.clientY - rect.top) * canvas.height / rect.height;
  return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
}

function redraw() {
  const canvas = $("frame-canvas");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (page.image) ctx.drawImage(page.image, 0, 0, canvas.width, canvas.height);
  const line = Math.max(2, canvas.width / 320);
  ctx.lineWidth = line;
  ctx.font = `${Math.round(line * 8)}px sans-serif`;
  page.boxes.forEach(([x, y, w, h], i) => {
    ctx.strokeStyle = ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.strokeRect(x, y, w, h);
    ctx.fillText(String(i + 1), x + line * 2, y + line * 9);
  });
  page.points.forEach(([x, y], i) => {
    ctx.fillStyle = page.labels[i] ? "#2ca02c" : "#d62728";
    ctx.beginPath();
    ctx.arc(x, y, line * 3, 0, 2 * Math.PI);
    ctx.fill();
  });
  if (page.draft) {
    const { x0, y0, x1, y1 } = page.draft;
    ctx.setLineDash([line * 3, line * 2]);
    ctx.strokeStyle = COLORS[page.boxes.length % COLORS.length];
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    ctx.setLineDash([]);
  }
  renderObjectList();
  updateStartButton();
}

function renderObjectList() {
  const list = $("object-list");
  list.innerHTML = "";
  page.boxes.forEach((box, i) => {
    const item = document.createElement("li");
    item.innerHTML = `<span class="swatch" style="background:${COLORS[i % COLORS.length]}"></span>` +
      `object ${i + 1}: box x=${box[0].toFixed(0)} y=${box[1].toFixed(0)} ` +
      `w=${box[2].toFixed(0)} h=${box[3].toFixed(0)} `;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "small";
    remove.textContent = "remove";
    remove.onclick = () => { page.boxes.splice(i, 1); redraw(); };
    item.appendChild(remove);
    list.appendChild(item);
  });
  if (page.points.length) {
    const item = document.createElement("li");
    const positive = page.labels.filter((l) => l === 1).length;
    item.textContent = `object 1: ${positive} point(s) on it, ` +
      `${page.points.length - positive} on the background`;
    list.appendChild(item);
  }
}

function setupCanvas() {
  const canvas = $("frame-canvas");
  canvas.addEventListener("mousedown", (e) => {
    if (!page.image || mode() !== "box" || e.button !== 0) return;
    const [x, y] = toVideo(e);
    page.draft = { x0: x, y0: y, x1: x, y1: y };
  });
  window.addEventListener("mousemove", (e) => {
    if (!page.draft) return;
    const [x, y] = toVideo(e);
    page.draft.x1 = x;
    page.draft.y1 = y;
    redraw();
  });
  window.addEventListener("mouseup", () => {
    if (!page.draft) return;
    const { x0, y0, x1, y1 } = page.draft;
    page.draft = null;
    const w = Math.abs(x1 - x0), h = Math.abs(y1 - y0);
    if (w >= 4 && h >= 4) page.boxes.push([Math.min(x0, x1), Math.min(y0, y1), w, h]);
    redraw();
  });
  canvas.addEventListener("click", (e) => {
    if (!page.image || mode() !== "points") return;
    page.points.push(toVideo(e));
    page.labels.push(e.shiftKey ? 0 : 1);
    redraw();
  });
  canvas.addEventListener("contextmenu", (e) => {
    if (!page.image || mode() !== "points") return;
    e.preventDefault();
    page.points.push(toVideo(e));
    page.labels.push(0);
    redraw();
  });
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => {
      $("prompt-hint").textContent = mode() === "box"
        ? "Press the mouse button at one corner of the object, drag to the opposite corner and " +
          "release. Draw one box per object."
        : "Click on the object to track (object 1). Shift-click or right-click marks background " +
          "that must not be included. Boxes drawn before are kept as objects 1, 2, ...";
    });
  }
  $("undo").onclick = () => {
    if (mode() === "points" && page.points.length) {
      page.points.pop();
      page.labels.pop();
    } else {
      page.boxes.pop();
    }
    redraw();
  };
  $("clear").onclick = () => { page.boxes = []; page.points = []; page.labels = []; redraw(); };
}

// ---------------------------------------------------------------------------- step 3: run
function updateStartButton() {
  const ready = page.video && (page.boxes.length || page.labels.includes(1));
  $("start").disabled = !ready;
  $("start-hint").hidden = Boolean(ready);
}

async function loadModels() {
  const { default: chosen, models } = await api("GET", "/api/models");
  const select = $("model");
  select.innerHTML = "";
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name + (m.available ? "" : " (download on first use)");
    select.appendChild(option);
  }
  select.value = chosen;
}

async function startJob() {
  $("start-error").textContent = "";
  const form = new FormData();
  form.append("video_id", page.video.id);
  if (page.boxes.length) form.append("boxes", JSON.stringify(page.boxes.map(roundBox)));
  if (page.points.length) {
    form.append("points", JSON.stringify(page.points.map(([x, y]) => [round(x), round(y)])));
    form.append("labels", JSON.stringify(page.labels));
  }
  form.append("model", $("model").value);
  form.append("tracker", $("tracker").value);
  $("start").disabled = true;
  try {
    const job = await api("POST", "/api/jobs", form);
    followJob(job.id);
    refreshJobs();
  } catch (e) {
    $("start-error").textContent = "Could not start: " + e.message;
  } finally {
    updateStartButton();
  }
}

const round = (v) => Math.round(v * 10) / 10;
const roundBox = (box) => box.map(round);

function showProgress(job) {
  $("progress-box").hidden = false;
  $("job-progress").value = job.progress;
  const frames = job.num_frames ? `frame ${job.frames_done} of ${job.num_frames}` : "";
  const speed = job.fps ? `, ${job.fps.toFixed(2)} frames/s` : "";
  const text = {
    queued: "Waiting for a free worker...",
    running: `Tracking: ${frames}${speed}`,
    done: `Done: ${job.num_frames} frames tracked${speed}.`,
    failed: `Failed: ${job.error}`,
    cancelled: "Cancelled.",
  }[job.state];
  $("job-status").textContent = text;
  $("cancel").hidden = job.state !== "queued" && job.state !== "running";
}

function stopFollowing() {
  if (page.events) page.events.close();
  page.events = null;
  clearInterval(page.pollTimer);
  page.pollTimer = null;
}

function followJob(jobId) {
  stopFollowing();
  page.jobId = jobId;
  $("step-result").hidden = true;
  $("result-video").removeAttribute("src");
  const onUpdate = (job) => {
    if (job.id !== page.jobId) return;
    showProgress(job);
    if (job.state === "done") showResult(job);
  };
  const source = new EventSource(`/api/jobs/${jobId}/events`);
  page.events = source;
  source.addEventListener("job", (e) => onUpdate(JSON.parse(e.data)));
  source.addEventListener("end", (e) => {
    stopFollowing();
    onUpdate(JSON.parse(e.data));
    refreshJobs();
  });
  source.addEventListener("deleted", () => stopFollowing());
  source.onerror = () => {
    // SSE unavailable (proxy, network): fall back to polling the job.
    if (page.events !== source) return;
    stopFollowing();
    page.pollTimer = setInterval(async () => {
      try {
        const job = await api("GET", `/api/jobs/${jobId}`);
        onUpdate(job);
        if (!["queued", "running"].includes(job.state)) stopFollowing();
      } catch (err) {
        stopFollowing();
      }
    }, 1000);
  };
}

// ---------------------------------------------------------------------------- step 4: result
function showResult(job) {
  $("step-result").hidden = false;
  const video = $("result-video");
  if (job.results.overlay && video.getAttribute("src") !== job.results.overlay) {
    video.src = job.results.overlay;
  }
  const list = $("downloads");
  list.innerHTML = "";
  for (const [kind, url] of Object.entries(job.results)) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = url;
    link.download = "";
    link.className = "download";
    link.dataset.kind = kind;
    link.textContent = RESULT_LABELS[kind] || kind;
    item.appendChild(link);
    list.appendChild(item);
  }
}

// ---------------------------------------------------------------------------- job list
async function refreshJobs() {
  let jobs;
  try {
    ({ jobs } = await api("GET", "/api/jobs"));
  } catch (e) {
    return;
  }
  const body = document.querySelector("#jobs tbody");
  body.innerHTML = "";
  $("no-jobs").hidden = jobs.length > 0;
  for (const job of jobs) {
    const row = document.createElement("tr");
    row.dataset.jobId = job.id;
    const started = new Date(job.created * 1000).toLocaleTimeString();
    const progress = job.num_frames ? `${job.frames_done}/${job.num_frames}` : "";
    row.innerHTML =
      `<td><code>${job.id.slice(0, 8)}</code></td><td></td><td>${job.model}</td>` +
      `<td><span class="state state-${job.state}">${job.state}</span></td>` +
      `<td>${progress}</td><td>${started}</td><td class="actions"></td>`;
    row.children[1].textContent = job.video_filename || job.video_id.slice(0, 8);
    if (job.error) row.children[3].title = job.error;
    const actions = row.querySelector(".actions");
    const view = document.createElement("button");
    view.type = "button";
    view.className = "small";
    view.textContent = "show";
    view.onclick = () => followJob(job.id);
    actions.appendChild(view);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "small";
    const active = job.state === "queued" || job.state === "running";
    remove.textContent = active ? "cancel" : "delete";
    remove.onclick = async () => {
      await api("DELETE", `/api/jobs/${job.id}`).catch(() => null);
      refreshJobs();
    };
    actions.appendChild(remove);
    body.appendChild(row);
  }
}

async function main() {
  setupCanvas();
  $("video-file").addEventListener("change", (e) => {
    if (e.target.files.length) uploadVideo(e.target.files[0]);
  });
  $("previous-videos").addEventListener("change", async (e) => {
    if (!e.target.value) return;
    try {
      await chooseVideo(await api("GET", `/api/videos/${e.target.value}`));
    } catch (err) {
      $("video-error").textContent = err.message;
    }
  });
  $("start").onclick = startJob;
  $("cancel").onclick = async () => {
    if (page.jobId) await api("DELETE", `/api/jobs/${page.jobId}`).catch(() => null);
    refreshJobs();
  };
  await Promise.all([loadModels(), loadVideoList(), refreshJobs()]);
  setInterval(refreshJobs, 3000);
}

main();
