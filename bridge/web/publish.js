// bridge's browser publisher: camera and microphone over WHIP (webrtc.js), to /whip/CHANNEL with
// the stream key as a Bearer token.
//
// URL parameters: channel, key, codec (h264 | vp8 | vp9), autostart=1 (start without a click:
// tests, kiosks). The key in the URL is the caller's choice; the form never puts it there.
//
// Tests read `window.bridgePublishStats`, refreshed every 250 ms:
//   state            "idle" | "connecting" | "publishing" | "failed" | "stopped"
//   connectionState  RTCPeerConnection.connectionState, null without a session
//   videoCodec       mimeType of the outbound video ("video/H264", "video/VP8", ...)
//   framesEncoded, framesSent, keyFramesEncoded, packetsSent, frameWidth, frameHeight (video)
//   audioPacketsSent
//   bitrateKbps      video send rate over the last tick; qualityLimitationReason
//   error            the last error as text, or null (cleared by Start)
//   errors           all errors, oldest first (at most 20): {at, message}
//   location         the WHIP session URL, or null
//   channel, codec (the one asked for), codecs (what this browser can send), updatedAt
(function () {
  'use strict';

  const TICK_MS = 250;
  const MAX_ENTRIES = 20;
  const CHANNEL_RE = /^[A-Za-z0-9_-]{1,128}$/;
  // ICE and DTLS take well under a second on a LAN; "checking" for this long means UDP does not
  // get through, and the browser itself would wait about 30 s before saying "failed".
  const CONNECT_TIMEOUT_MS = 15000;
  const CODECS = [
    { id: 'h264', mime: 'video/h264', label: 'H.264' },
    { id: 'vp8', mime: 'video/vp8', label: 'VP8' },
    { id: 'vp9', mime: 'video/vp9', label: 'VP9' },
  ];

  const params = new URLSearchParams(window.location.search);
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $('setup'), channel: $('channel'), key: $('key'), codec: $('codec'),
    start: $('start'), stop: $('stop'), preview: $('preview'), status: $('status'),
    errors: $('errors'), watch: $('watch'), state: $('state'), codecUsed: $('codec-used'),
    resolution: $('resolution'), frames: $('frames'), bitrate: $('bitrate'),
  };

  const stats = {
    state: 'idle',
    connectionState: null,
    videoCodec: null,
    framesEncoded: null,
    framesSent: null,
    keyFramesEncoded: null,
    packetsSent: null,
    audioPacketsSent: null,
    frameWidth: null,
    frameHeight: null,
    bitrateKbps: null,
    qualityLimitationReason: null,
    error: null,
    errors: [],
    location: null,
    channel: null,
    codec: null,
    codecs: [],
    updatedAt: 0,
  };
  window.bridgePublishStats = stats;

  let session = null;
  let stream = null;
  let generation = 0;       // bumped by every start and stop: late results of older ones are dropped
  let connectTimer = null;
  let statsBusy = false;
  let lastBytes = null;     // {bytes, at} of the video sender, for the bitrate

  function setStatus(text) {
    el.status.textContent = text;
  }

  function reportError(message) {
    stats.error = message;
    stats.errors.push({ at: Date.now(), message: message });
    if (stats.errors.length > MAX_ENTRIES) stats.errors.splice(0, stats.errors.length - MAX_ENTRIES);
    const li = document.createElement('li');
    li.textContent = new Date().toLocaleTimeString() + '  ' + message;
    el.errors.appendChild(li);
    while (el.errors.childNodes.length > 5) el.errors.removeChild(el.errors.firstChild);
  }

  window.addEventListener('error', (event) => {
    reportError('exception: ' + event.message + (event.filename ? ' (' + event.filename + ':' + event.lineno + ')' : ''));
  });
  window.addEventListener('unhandledrejection', (event) => {
    reportError('exception: ' + (event.reason && event.reason.message || event.reason));
  });

  function setState(state) {
    stats.state = state;
    const busy = state === 'connecting' || state === 'publishing';
    el.start.disabled = busy;
    el.stop.disabled = !busy;
    el.channel.disabled = busy;
    el.key.disabled = busy;
    el.codec.disabled = busy;
    render();
  }

  // ------------------------------------------------------------------ codecs

  function sendableCodecs() {
    const caps = window.RTCRtpSender && typeof RTCRtpSender.getCapabilities === 'function'
      ? RTCRtpSender.getCapabilities('video') : null;
    if (!caps) return [];
    const mimes = caps.codecs.map((c) => c.mimeType.toLowerCase());
    return CODECS.filter((c) => mimes.indexOf(c.mime) >= 0);
  }

  // False when the URL asks for a codec this browser cannot send.
  function fillCodecs() {
    const codecs = sendableCodecs();
    stats.codecs = codecs.map((c) => c.id);
    for (const codec of codecs) {
      const option = document.createElement('option');
      option.value = codec.id;
      option.textContent = codec.label;
      el.codec.appendChild(option);
    }
    const wanted = (params.get('codec') || '').toLowerCase();
    if (!wanted) return true;
    if (stats.codecs.indexOf(wanted) >= 0) {
      el.codec.value = wanted;
      return true;
    }
    reportError('codec ' + wanted + ' is not available in this browser (it can send ' +
      (stats.codecs.join(', ') || 'none of H.264, VP8, VP9') + ')');
    return false;
  }

  function codecLabel(id) {
    const found = CODECS.find((c) => c.id === id);
    return found ? found.label : id;
  }

  // ------------------------------------------------------------------ errors in words

  function explain(error, channel, codec) {
    const status = error && error.status;
    const detail = error && error.detail ? ' Server: ' + error.detail : '';
    if (status === 401 || status === 403) {
      return 'The server refused the key for channel ' + channel + ' (HTTP ' + status + '): check the stream key.' + detail;
    }
    if (status === 409) return 'Someone is already publishing to channel ' + channel + ' (HTTP 409).' + detail;
    if (status === 422) {
      return 'The server did not accept the offer (HTTP 422)' +
        (codec && codec !== 'h264' ? ': it may not take ' + codecLabel(codec) + ' video, try H.264.' : '.') + detail;
    }
    if (status === 400 || status === 413 || status === 415) return 'The server rejected the offer (HTTP ' + status + ').' + detail;
    if (status === 429 || status === 503) {
      return 'The server is at a limit (HTTP ' + status + '); try again' +
        (typeof error.retryAfter === 'number' ? ' in ' + Math.ceil(error.retryAfter) + ' s' : ' later') + '.' + detail;
    }
    if (status === 404 || status === 405) return 'This server has no WHIP endpoint here (HTTP ' + status + ').' + detail;
    if (status) return 'WHIP answered HTTP ' + status + '.' + detail;
    const name = error && error.name;
    if (name === 'NotAllowedError') return 'Camera and microphone access was denied.';
    if (name === 'NotFoundError') return 'No camera or microphone was found.';
    if (name === 'NotReadableError') return 'The camera or microphone is in use by another program.';
    if (name === 'OverconstrainedError') return 'The camera cannot deliver the requested format.';
    if (error instanceof TypeError && /fetch/i.test(error.message)) return 'Cannot reach the server: ' + error.message;
    return String(error && error.message || error);
  }

  // ------------------------------------------------------------------ media

  async function openMedia() {
    if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== 'function') {
      throw new Error('camera access needs HTTPS or localhost (navigator.mediaDevices is missing here)');
    }
    const video = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
    try {
      return await navigator.mediaDevices.getUserMedia({ video: video, audio: true });
    } catch (error) {
      if (error.name !== 'NotFoundError' && error.name !== 'NotReadableError') throw error;
      // One of the two is missing or busy: publish what there is, and say so.
      for (const constraints of [{ video: video }, { audio: true }]) {
        try {
          const partial = await navigator.mediaDevices.getUserMedia(constraints);
          reportError('publishing ' + (constraints.video ? 'video only' : 'audio only') + ': ' + explain(error));
          return partial;
        } catch (e) { /* try the other */ }
      }
      throw error;
    }
  }

  function releaseMedia() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    el.preview.srcObject = null;
  }

  // ------------------------------------------------------------------ start / stop

  function clearConnectTimer() {
    if (connectTimer !== null) {
      clearTimeout(connectTimer);
      connectTimer = null;
    }
  }

  function teardown() {
    generation += 1;
    clearConnectTimer();
    if (session) session.stop();  // DELETEs the session: the channel is free at once
    session = null;
    releaseMedia();
    stats.connectionState = null;
    lastBytes = null;
  }

  function fail(message) {
    teardown();
    reportError(message);
    setState('failed');
    setStatus('Failed: ' + message);
  }

  function onConnectionState(current) {
    const state = current.pc.connectionState;
    stats.connectionState = state;
    if (state === 'connected' && stats.state === 'connecting') {
      clearConnectTimer();
      setState('publishing');
      setStatus('Publishing to ' + stats.channel + '.');
    }
  }

  async function start() {
    if (stats.state === 'connecting' || stats.state === 'publishing') return;
    const channel = el.channel.value.trim();
    const key = el.key.value;
    const codec = el.codec.value || null;
    if (!CHANNEL_RE.test(channel)) {
      fail("a channel name has 1 to 128 letters, digits, '-' or '_'");
      return;
    }
    if (!window.BridgeWebRTC || typeof window.RTCPeerConnection !== 'function') {
      fail('this browser cannot publish: ' + (window.BridgeWebRTC ? 'no WebRTC' : 'webrtc.js did not load'));
      return;
    }
    teardown();
    const mine = generation;
    stats.error = null;
    stats.channel = channel;
    stats.codec = codec;
    stats.location = null;
    el.watch.href = 'play.html?channel=' + encodeURIComponent(channel);
    el.watch.hidden = false;
    setState('connecting');
    setStatus('Opening the camera and microphone…');
    try {
      const media = await openMedia();
      if (mine !== generation) {
        media.getTracks().forEach((track) => track.stop());
        return;
      }
      stream = media;
      el.preview.srcObject = media;
      setStatus('Connecting to ' + channel + ' (WHIP' + (codec ? ', ' + codecLabel(codec) : '') + ')…');
      const current = await window.BridgeWebRTC.whip('/whip/' + encodeURIComponent(channel), media, {
        token: key || null,
        videoCodec: codec,
        onEnded: (reason) => {
          if (mine === generation) fail('The connection ended: ' + reason + '.');
        },
      });
      if (mine !== generation) {
        current.stop();
        return;
      }
      session = current;
      stats.location = current.location;
      current.pc.addEventListener('connectionstatechange', () => {
        if (mine === generation) onConnectionState(current);
      });
      onConnectionState(current);
      if (stats.state === 'connecting') {
        connectTimer = setTimeout(() => {
          connectTimer = null;
          if (mine === generation && stats.state === 'connecting') {
            fail('No WebRTC connection within ' + CONNECT_TIMEOUT_MS / 1000 + ' s (' + current.pc.connectionState +
              '): UDP may be blocked between this browser and the server.');
          }
        }, CONNECT_TIMEOUT_MS);
      }
    } catch (error) {
      if (mine === generation) fail(explain(error, channel, codec));
    }
  }

  function stop() {
    if (stats.state !== 'connecting' && stats.state !== 'publishing') return;
    teardown();
    setState('stopped');
    setStatus('Stopped.');
  }

  el.form.addEventListener('submit', (event) => {
    event.preventDefault();
    start();
  });
  el.stop.addEventListener('click', stop);

  // ------------------------------------------------------------------ measurements

  function readStats(report) {
    let videoOut = null;
    let audioOut = null;
    report.forEach((entry) => {
      if (entry.type !== 'outbound-rtp') return;
      const kind = entry.kind || entry.mediaType;
      if (kind === 'video') videoOut = entry;
      else if (kind === 'audio') audioOut = entry;
    });
    const num = (entry, name) => (entry && typeof entry[name] === 'number' ? entry[name] : null);
    for (const name of ['framesEncoded', 'framesSent', 'keyFramesEncoded', 'packetsSent', 'frameWidth', 'frameHeight']) {
      stats[name] = num(videoOut, name);
    }
    stats.audioPacketsSent = num(audioOut, 'packetsSent');
    const codec = videoOut && videoOut.codecId ? report.get(videoOut.codecId) : null;
    stats.videoCodec = codec && codec.mimeType || null;
    if (stats.state === 'publishing' && stats.videoCodec) {
      // The offer lists other codecs after the chosen one: the server may have picked another.
      const asked = CODECS.find((c) => c.id === stats.codec);
      const used = stats.videoCodec.replace(/^video\//i, '');
      setStatus('Publishing to ' + stats.channel + ' (' + used +
        (asked && asked.mime !== stats.videoCodec.toLowerCase() ? '; the server did not take ' + asked.label : '') + ').');
    }
    stats.qualityLimitationReason = videoOut && videoOut.qualityLimitationReason || null;
    const bytes = num(videoOut, 'bytesSent');
    const now = performance.now();
    if (bytes !== null && lastBytes && now > lastBytes.at) {
      stats.bitrateKbps = Math.round((bytes - lastBytes.bytes) * 8 / (now - lastBytes.at));
    }
    lastBytes = bytes === null ? null : { bytes: bytes, at: now };
  }

  function clearStats() {
    for (const name of ['videoCodec', 'framesEncoded', 'framesSent', 'keyFramesEncoded', 'packetsSent',
      'audioPacketsSent', 'frameWidth', 'frameHeight', 'bitrateKbps', 'qualityLimitationReason']) {
      stats[name] = null;
    }
  }

  function measure() {
    stats.updatedAt = Date.now();
    const current = session;
    if (!current) {
      if (stats.state !== 'connecting') clearStats();
      render();
      return;
    }
    stats.connectionState = current.pc.connectionState;
    if (statsBusy) return;
    statsBusy = true;
    current.pc.getStats().then((report) => {
      statsBusy = false;
      if (current !== session) return;
      readStats(report);
      render();
    }, () => {
      statsBusy = false;
    });
  }

  function render() {
    el.state.textContent = stats.state + (stats.connectionState && stats.state === 'connecting' ? ' · ' + stats.connectionState : '');
    el.state.className = 'value small ' + stats.state;
    el.codecUsed.textContent = stats.videoCodec ? stats.videoCodec.replace(/^video\//i, '') : '–';
    el.resolution.textContent = stats.frameWidth ? stats.frameWidth + '×' + stats.frameHeight : '–';
    el.frames.textContent = stats.framesSent === null ? '–' : String(stats.framesSent);
    el.frames.title = stats.framesSent === null ? '' : 'encoded ' + stats.framesEncoded + ', key frames ' +
      stats.keyFramesEncoded + ', video packets ' + stats.packetsSent + ', audio packets ' + stats.audioPacketsSent;
    el.bitrate.textContent = stats.bitrateKbps === null ? '–' : stats.bitrateKbps + ' kb/s';
    el.bitrate.title = stats.qualityLimitationReason && stats.qualityLimitationReason !== 'none'
      ? 'limited by ' + stats.qualityLimitationReason : '';
  }

  // ------------------------------------------------------------------ go

  const codecOk = fillCodecs();
  if (params.get('channel')) el.channel.value = params.get('channel');
  if (params.get('key')) el.key.value = params.get('key');
  setState('idle');
  setInterval(measure, TICK_MS);
  if (params.get('autostart') === '1') {
    // Never publish a codec other than the one asked for without someone seeing it.
    if (codecOk) start();
    else setState('failed');
  }
})();
