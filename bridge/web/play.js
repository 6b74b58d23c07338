// bridge's player page. WebRTC (WHEP, webrtc.js) first: it is the lowest latency. LL-HLS when
// WebRTC is not possible: hls.js where Media Source Extensions exist, the browser's own HLS
// (Safari, iOS before 17.1) otherwise.
//
// URL parameters: channel; player=webrtc (WHEP only, never falls back) | hls (hls.js, no
// WebRTC) | native (the browser's HLS where it has one); src (another playlist URL: HLS only);
// ll=0 (classic HLS; implies HLS); sync (HLS target latency, seconds).
//
// Without `player`, a WHEP POST refused with anything but 409, a connection that fails, or no
// decoded video frame within 5 s switches to HLS for good (fallbackReason says why). 409 means
// "not live yet": the page retries with back-off from Retry-After. A WebRTC session that played
// and then broke is retried (3 times, with back-off) before HLS is chosen.
//
// Tests and benchmarks read `window.bridgeStats`, refreshed every 250 ms:
//   mode           "webrtc" | "hls.js" | "native" | null
//   playing        HLS: true while the video is actually moving (not paused, not starved);
//                  WebRTC: true while framesDecoded advances (audio packets for audio-only)
//   currentTime    the video element's currentTime
//   errors         fatal errors, oldest first (at most 20): {at, type, details, fatal, message}
//   warnings       non-fatal ones, same shape (at most 20); a WebRTC fallback is one
//   src, channel, ended, hlsVersion, updatedAt (ms since the epoch)
// HLS (null or 0 in WebRTC mode):
//   latency        seconds behind live (PROGRAM-DATE-TIME based when the playlist has it,
//                  else hls.js's live-edge estimate); null until known
//   latencySource  "pdt" | "edge" | null
//   pdtLatency, edgeLatency, targetLatency, buffered, playbackRate, restarts
// WebRTC (from RTCPeerConnection.getStats(); null until known, reset on every WHEP attempt):
//   framesDecoded, framesReceived, framesDropped, freezeCount, totalFreezesDuration (s),
//   keyFramesDecoded, frameWidth, frameHeight      inbound video
//   videoCodec, audioCodec                         mimeTypes, e.g. "video/H264", "audio/opus"
//   audioPacketsReceived, audioPacketsLost
//   jitterBufferDelayMs    average jitter buffer delay of video frames
//   firstFrameMs           WHEP POST sent -> first decoded (presented) video frame
//   connectionState        RTCPeerConnection.connectionState
//   whepAttempts           WHEP POSTs made by this page (kept across attempts)
//   fallbackReason         why HLS is playing instead of WebRTC, or null
(function () {
  'use strict';

  var TICK_MS = 250;
  var MAX_ENTRIES = 20;
  var CHANNEL_RE = /^[A-Za-z0-9_-]{1,128}$/;
  // Back-off between restarts after a fatal error (channel not live yet, server restarted).
  var RESTART_DELAYS_MS = [1000, 2000, 4000, 8000];
  var ENDED_POLL_MS = 2000;
  // WebRTC: a session that gets no frame this long after its answer is not going to work here
  // (UDP blocked, codec the browser cannot decode): HLS will.
  var FIRST_FRAME_TIMEOUT_MS = 5000;
  // Reconnects of a session that did play before falling back to HLS.
  var WHEP_RETRY_DELAYS_MS = [1000, 2000, 4000];
  // 409 back-off: doubles from Retry-After, but a viewer waiting for a channel should not wait
  // long once it is live.
  var DEFAULT_RETRY_AFTER_S = 2;
  var MAX_WAIT_S = 10;
  // Connected but no media this long: the publisher left without the server ending the
  // session; asking again gets 409 until it is back.
  var STALL_MS = 10000;
  // "playing" means a frame decoded within this window: a few stats polls, so that a poll
  // delayed by a busy machine does not read as a stall.
  var ADVANCING_MS = 1500;

  var params = new URLSearchParams(window.location.search);
  var forcedPlayer = params.get('player');
  var video = document.getElementById('video');
  var el = {
    title: document.getElementById('title'),
    status: document.getElementById('status'),
    latency: document.getElementById('latency'),
    target: document.getElementById('target'),
    buffer: document.getElementById('buffer'),
    rate: document.getElementById('rate'),
    mode: document.getElementById('mode'),
    errors: document.getElementById('errors'),
    fallback: document.getElementById('fallback'),
  };

  var stats = {
    latency: null,
    latencySource: null,
    pdtLatency: null,
    edgeLatency: null,
    targetLatency: null,
    currentTime: 0,
    buffered: 0,
    playbackRate: 1,
    playing: false,
    ended: false,
    errors: [],
    warnings: [],
    mode: null,
    hlsVersion: window.Hls ? window.Hls.version : null,
    src: null,
    channel: null,
    restarts: 0,
    updatedAt: 0,
    framesDecoded: null,
    framesReceived: null,
    framesDropped: null,
    freezeCount: null,
    totalFreezesDuration: null,
    keyFramesDecoded: null,
    frameWidth: null,
    frameHeight: null,
    videoCodec: null,
    audioCodec: null,
    audioPacketsReceived: null,
    audioPacketsLost: null,
    jitterBufferDelayMs: null,
    firstFrameMs: null,
    connectionState: null,
    fallbackReason: null,
    whepAttempts: 0,
  };
  window.bridgeStats = stats;
  var RTC_FIELDS = [
    'framesDecoded', 'framesReceived', 'framesDropped', 'freezeCount', 'totalFreezesDuration',
    'keyFramesDecoded', 'frameWidth', 'frameHeight', 'videoCodec', 'audioCodec',
    'audioPacketsReceived', 'audioPacketsLost', 'jitterBufferDelayMs', 'firstFrameMs',
    'connectionState',
  ];

  var hls = null;
  var restartTimer = null;
  var lastMediaRecovery = 0;
  var wasLive = false;

  function setStatus(text) {
    el.status.textContent = text;
  }

  function entry(type, details, fatal, message) {
    return { at: Date.now(), type: String(type), details: String(details || ''), fatal: !!fatal, message: String(message || '') };
  }

  function push(list, item) {
    list.push(item);
    if (list.length > MAX_ENTRIES) list.splice(0, list.length - MAX_ENTRIES);
  }

  function reportError(type, details, message) {
    var item = entry(type, details, true, message);
    push(stats.errors, item);
    var li = document.createElement('li');
    li.textContent = new Date(item.at).toLocaleTimeString() + '  ' + item.type +
      (item.details ? ' / ' + item.details : '') + (item.message ? ': ' + item.message : '');
    el.errors.appendChild(li);
    while (el.errors.childNodes.length > 5) el.errors.removeChild(el.errors.firstChild);
  }

  function reportWarning(type, details, message) {
    push(stats.warnings, entry(type, details, false, message));
  }

  window.addEventListener('error', function (event) {
    reportError('exception', event.filename ? event.filename + ':' + event.lineno : '', event.message);
  });
  window.addEventListener('unhandledrejection', function (event) {
    reportError('exception', 'unhandledrejection', event.reason && event.reason.message || event.reason);
  });

  // ------------------------------------------------------------------ which playlist

  function resolveSource() {
    var src = params.get('src');
    if (src) {
      var url;
      try {
        url = new URL(src, window.location.href);
      } catch (e) {
        return { error: 'src is not a URL' };
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        return { error: 'src must be an http(s) URL' };
      }
      return { url: url.href, label: url.pathname };
    }
    var channel = params.get('channel');
    if (!channel) return { error: 'no channel: open play.html?channel=NAME' };
    if (!CHANNEL_RE.test(channel)) {
      return { error: "a channel name has 1 to 128 letters, digits, '-' or '_'" };
    }
    stats.channel = channel;
    document.querySelector('#switch input[name=channel]').value = channel;
    // Same origin, absolute paths: the server mounts HLS at /hls/ and WHEP at /whep/ wherever
    // this page lives.
    return {
      url: '/hls/' + encodeURIComponent(channel) + '/index.m3u8',
      whep: '/whep/' + encodeURIComponent(channel),
      label: channel,
    };
  }

  // ------------------------------------------------------------------ hls.js

  function hlsConfig() {
    var lowLatency = params.get('ll') !== '0';
    var config = {
      lowLatencyMode: lowLatency,
      // Catch up by playing up to 1.5x when behind the target (hls.js's default, 1, never does).
      maxLiveSyncPlaybackRate: 1.5,
      // A live viewer never seeks far back: keep memory flat.
      backBufferLength: 10,
      enableWorker: true,
    };
    // Without `sync` the server's PART-HOLD-BACK (LL) or HOLD-BACK / 3 target durations
    // (classic) decides the target latency: setting liveSyncDuration would override them.
    var sync = parseFloat(params.get('sync'));
    if (isFinite(sync) && sync > 0 && sync <= 60) {
      config.liveSyncDuration = sync;
      config.liveMaxLatencyDuration = sync + Math.max(2, sync);
    }
    return config;
  }

  // Once the first playlist is known, give hls.js a ceiling: further behind than the target
  // plus two target durations (a stall, a throttled tab), it jumps back to the live edge.
  function setMaxLatency(details) {
    if (!hls || hls.config.liveMaxLatencyDuration !== undefined || !details || !details.live) return;
    var target = hls.targetLatency || 3 * details.targetduration;
    hls.config.liveMaxLatencyDuration = target + Math.max(2, 2 * details.targetduration);
  }

  function startHls(source) {
    var Hls = window.Hls;
    stats.mode = 'hls.js';
    var instance = new Hls(hlsConfig());
    hls = instance;
    var described = false;
    instance.on(Hls.Events.MANIFEST_PARSED, function () {
      setStatus('Loading ' + source.label + '…');
      tryPlay();
    });
    instance.on(Hls.Events.LEVEL_UPDATED, function (event, data) {
      var details = data.details;
      if (details.live) wasLive = true;
      setMaxLatency(details);
      if (!described && instance === hls) {
        described = true;
        var kind = !details.live ? 'recorded' : details.partTarget && instance.config.lowLatencyMode
          ? 'LL-HLS, parts of ' + details.partTarget + ' s' : 'HLS, segments of ' + details.targetduration + ' s';
        setStatus('Playing ' + source.label + ' (' + kind + ')');
      }
    });
    instance.on(Hls.Events.ERROR, function (event, data) {
      if (instance !== hls) return;
      var message = data.reason || (data.error && data.error.message) ||
        (data.response && data.response.code ? 'HTTP ' + data.response.code : '');
      if (data.url) message = (message ? message + ' ' : '') + '(' + data.url + ')';
      if (!data.fatal) {
        reportWarning(data.type, data.details, message);
        return;
      }
      reportError(data.type, data.details, message);
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && Date.now() - lastMediaRecovery > 5000) {
        // hls.js's documented recovery: rebuild the SourceBuffers once, then start over.
        lastMediaRecovery = Date.now();
        instance.recoverMediaError();
        return;
      }
      scheduleRestart(source, 'error: ' + data.details);
    });
    instance.loadSource(source.url);
    instance.attachMedia(video);
  }

  // ------------------------------------------------------------------ native HLS

  function startNative(source) {
    stats.mode = 'native';
    video.src = source.url;
    setStatus('Playing ' + source.label + ' (native HLS)');
    tryPlay();
  }

  // ------------------------------------------------------------------ lifecycle

  function tryPlay() {
    var promise = video.play();
    if (promise && promise.catch) {
      promise.catch(function (error) {
        // Autoplay refused (sound on, no gesture): not an error of the stream.
        reportWarning('autoplay', error.name, error.message);
        setStatus('Press play to start.');
      });
    }
  }

  function stop() {
    if (restartTimer !== null) {
      clearTimeout(restartTimer);
      restartTimer = null;
    }
    if (hls) {
      hls.destroy();
      hls = null;
    }
  }

  function scheduleRestart(source, why) {
    stop();
    var delay = RESTART_DELAYS_MS[Math.min(stats.restarts, RESTART_DELAYS_MS.length - 1)];
    stats.restarts += 1;
    setStatus('Stopped (' + why + '); retrying in ' + delay / 1000 + ' s…');
    restartTimer = setTimeout(function () {
      restartTimer = null;
      start(source);
    }, delay);
  }

  function start(source) {
    stats.ended = false;
    var Hls = window.Hls;
    var nativeHls = video.canPlayType('application/vnd.apple.mpegurl') !== '';
    var wantNative = params.get('player') === 'native';
    if (Hls && Hls.isSupported() && !(wantNative && nativeHls)) {
      startHls(source);
    } else if (nativeHls) {
      startNative(source);
    } else if (!Hls) {
      reportError('setup', 'hlsjs-missing', 'hls.js did not load (vendor/hls.js-1.7.4/hls.min.js)');
      setStatus('Cannot play: the player library did not load.');
    } else {
      reportError('setup', 'unsupported', 'this browser has neither Media Source Extensions nor native HLS');
      setStatus('Cannot play HLS in this browser.');
    }
  }

  video.addEventListener('error', function () {
    var error = video.error;
    if (!error) return;
    reportError('video', 'MEDIA_ERR_' + error.code, error.message);
    if (stats.mode === 'native') scheduleRestart(currentSource, 'video error ' + error.code);
  });
  video.addEventListener('durationchange', function () {
    // Native HLS shows live as Infinity (so does a WebRTC MediaStream, which says nothing).
    if (video.duration === Infinity && stats.mode !== 'webrtc') wasLive = true;
  });
  video.addEventListener('ended', function () {
    if (stats.mode === 'webrtc') return;  // WebRTC ends through its connection, below
    stats.ended = true;
    if (!wasLive) {
      setStatus('Finished.');
      return;
    }
    // EXT-X-ENDLIST: the publisher stopped. Restarting the player now would replay the last
    // window, so poll the playlist until it is live again.
    stop();
    setStatus('The stream ended; waiting for it to come back…');
    waitForLive(currentSource);
  });

  // Live means a media playlist with segments and no EXT-X-ENDLIST. A multivariant playlist is
  // followed to its first variant.
  function isLive(url, depth) {
    return fetch(url, { cache: 'no-store' }).then(function (response) {
      if (!response.ok) return false;
      return response.text().then(function (text) {
        var lines = text.split(/\r?\n/);
        var variant = lines.findIndex(function (line) { return line.indexOf('#EXT-X-STREAM-INF') === 0; });
        if (variant >= 0) {
          var uri = lines.slice(variant + 1).find(function (line) { return line && line[0] !== '#'; });
          return uri && depth < 1 ? isLive(new URL(uri.trim(), response.url).href, depth + 1) : false;
        }
        return text.indexOf('#EXTINF') >= 0 && text.indexOf('#EXT-X-ENDLIST') < 0;
      });
    }).catch(function () { return false; });
  }

  function waitForLive(source) {
    restartTimer = setTimeout(function () {
      restartTimer = null;
      isLive(source.url, 0).then(function (live) {
        if (restartTimer !== null || hls) return;  // something else restarted meanwhile
        if (live) start(source);
        else waitForLive(source);
      });
    }, ENDED_POLL_MS);
  }

  // ------------------------------------------------------------------ WebRTC (WHEP)

  var rtc = null;            // the current WHEP session (webrtc.js)
  var rtcGeneration = 0;     // bumped by every attempt and stop: late callbacks of older ones are ignored
  var rtcTimer = null;       // first-frame deadline or the next attempt
  var rtcPlayed = false;     // some session decoded a frame: a later failure reconnects first
  var rtcRetries = 0;        // failed attempts since the last frame
  var rtcWaits = 0;          // 409s in a row
  var rtcProgress = { frames: 0, audio: 0, at: 0 };
  var rtcStatsBusy = false;
  var rtcRendered = false;   // the stat boxes show WebRTC figures

  function clearRtcTimer() {
    if (rtcTimer !== null) {
      clearTimeout(rtcTimer);
      rtcTimer = null;
    }
  }

  function resetRtcStats() {
    RTC_FIELDS.forEach(function (name) { stats[name] = null; });
    rtcProgress = { frames: 0, audio: 0, at: 0 };
  }

  function stopRtc() {
    rtcGeneration += 1;
    clearRtcTimer();
    if (rtc) {
      rtc.stop();  // DELETEs the session on the server
      rtc = null;
    }
    if (video.srcObject) video.srcObject = null;  // else it would hide hls.js's MediaSource
  }

  function describeFailure(error) {
    if (error && error.status) return 'WHEP answered HTTP ' + error.status + (error.detail ? ': ' + error.detail : '');
    var message = error && error.message || String(error);
    // fetch() rejects with a TypeError when the request does not get through at all.
    return (error instanceof TypeError ? 'WHEP request failed: ' : 'WebRTC setup failed: ') + message;
  }

  function startWebRTC(source) {
    clearRtcTimer();
    var generation = ++rtcGeneration;
    stats.mode = 'webrtc';
    stats.whepAttempts += 1;
    resetRtcStats();
    if (!rtcWaits) setStatus('Connecting to ' + source.label + ' (WebRTC)…');
    window.BridgeWebRTC.whep(source.whep, video, {
      onEnded: function (reason) {
        if (generation === rtcGeneration) rtcFailed(source, reason);
      },
      onPlayError: function (error) {
        // Only a refusal is news: an AbortError just means the stream was replaced meanwhile.
        if (generation !== rtcGeneration || error.name !== 'NotAllowedError') return;
        reportWarning('autoplay', error.name, error.message);
        setStatus('Press play to start.');
      },
    }).then(function (session) {
      if (generation !== rtcGeneration) {
        session.stop();
        return;
      }
      rtc = session;
      stats.connectionState = session.pc.connectionState;
      setStatus('Connecting to ' + source.label + ' (WebRTC), waiting for the first frame…');
      watchFirstFrame(source, session, generation);
    }, function (error) {
      if (generation !== rtcGeneration) return;
      if (error && error.status === 409) {
        waitForChannel(source, error.retryAfter);
        return;
      }
      rtcFailed(source, describeFailure(error));
    });
  }

  // 409: not live (yet). Retry-After is where the back-off starts (WHEP draft).
  function waitForChannel(source, retryAfter) {
    var base = typeof retryAfter === 'number' && isFinite(retryAfter)
      ? Math.min(Math.max(retryAfter, 0.5), 60) : DEFAULT_RETRY_AFTER_S;
    var delay = Math.max(base, Math.min(base * Math.pow(2, rtcWaits), MAX_WAIT_S));
    rtcWaits += 1;
    stopRtc();
    stats.mode = 'webrtc';
    setStatus('Waiting for the channel to go live (WebRTC; next try in ' + delay.toFixed(1).replace(/\.0$/, '') + ' s)…');
    rtcTimer = setTimeout(function () {
      rtcTimer = null;
      startWebRTC(source);
    }, delay * 1000);
  }

  function watchFirstFrame(source, session, generation) {
    // requestVideoFrameCallback fires when the frame is composited: the most precise moment;
    // the stats poll (framesDecoded > 0) is the fallback.
    if (typeof video.requestVideoFrameCallback === 'function') {
      video.requestVideoFrameCallback(function () {
        if (generation === rtcGeneration) gotFirstFrame(source, session);
      });
    }
    rtcTimer = setTimeout(function () {
      rtcTimer = null;
      if (generation !== rtcGeneration || stats.firstFrameMs !== null) return;
      var state = session.pc.connectionState;
      rtcFailed(source, state === 'connected'
        ? 'no video frame within ' + FIRST_FRAME_TIMEOUT_MS / 1000 + ' s'
        : 'no WebRTC connection within ' + FIRST_FRAME_TIMEOUT_MS / 1000 + ' s (' + state + ')');
    }, FIRST_FRAME_TIMEOUT_MS);
  }

  function gotFirstFrame(source, session) {
    if (stats.firstFrameMs !== null || session !== rtc) return;
    stats.firstFrameMs = Math.round(performance.now() - session.postedAt);
    rtcPlayed = true;
    rtcRetries = 0;
    rtcWaits = 0;
    rtcProgress.at = Date.now();
    clearRtcTimer();
    setStatus('Playing ' + source.label + ' (WebRTC)');
  }

  function rtcFailed(source, reason) {
    stopRtc();
    if (forcedPlayer === 'webrtc') {
      // Asked for WebRTC only: keep trying, and say why it does not work.
      reportError('webrtc', 'failed', reason);
      var delay = RESTART_DELAYS_MS[Math.min(rtcRetries, RESTART_DELAYS_MS.length - 1)];
      rtcRetries += 1;
      setStatus('WebRTC failed (' + reason + '); retrying in ' + delay / 1000 + ' s…');
      rtcTimer = setTimeout(function () {
        rtcTimer = null;
        startWebRTC(source);
      }, delay);
      return;
    }
    if (rtcPlayed && rtcRetries < WHEP_RETRY_DELAYS_MS.length) {
      var wait = WHEP_RETRY_DELAYS_MS[rtcRetries];
      rtcRetries += 1;
      reportWarning('webrtc', 'reconnect', reason);
      setStatus('WebRTC interrupted (' + reason + '); reconnecting in ' + wait / 1000 + ' s…');
      rtcTimer = setTimeout(function () {
        rtcTimer = null;
        startWebRTC(source);
      }, wait);
      return;
    }
    fallBack(source, reason);
  }

  function fallBack(source, reason) {
    stats.fallbackReason = reason;
    reportWarning('webrtc', 'fallback', reason);
    el.fallback.textContent = 'WebRTC was not used: ' + reason + '. Playing HLS instead.';
    el.fallback.hidden = false;
    start(source);
  }

  function pollRtcStats(source) {
    var session = rtc;
    if (!session || rtcStatsBusy) return;
    rtcStatsBusy = true;
    session.pc.getStats().then(function (report) {
      rtcStatsBusy = false;
      if (session !== rtc) return;
      readRtcStats(source, session, report);
      render();
    }, function () {
      rtcStatsBusy = false;
    });
  }

  function readRtcStats(source, session, report) {
    var videoIn = null;
    var audioIn = null;
    report.forEach(function (entry) {
      if (entry.type !== 'inbound-rtp') return;
      var kind = entry.kind || entry.mediaType;
      if (kind === 'video') videoIn = entry;
      else if (kind === 'audio') audioIn = entry;
    });
    function codec(entry) {
      var found = entry && entry.codecId ? report.get(entry.codecId) : null;
      return found && found.mimeType || null;
    }
    function num(entry, name) {
      return entry && typeof entry[name] === 'number' ? entry[name] : null;
    }
    stats.connectionState = session.pc.connectionState;
    ['framesDecoded', 'framesReceived', 'framesDropped', 'freezeCount', 'totalFreezesDuration',
      'keyFramesDecoded', 'frameWidth', 'frameHeight'].forEach(function (name) {
      stats[name] = num(videoIn, name);
    });
    stats.videoCodec = codec(videoIn);
    stats.audioCodec = codec(audioIn);
    stats.audioPacketsReceived = num(audioIn, 'packetsReceived');
    stats.audioPacketsLost = num(audioIn, 'packetsLost');
    var emitted = num(videoIn, 'jitterBufferEmittedCount');
    stats.jitterBufferDelayMs = emitted ? Math.round(num(videoIn, 'jitterBufferDelay') / emitted * 10000) / 10 : null;

    // Progress: decoded video frames, or audio packets when the channel has no video.
    var frames = stats.framesDecoded || 0;
    var audio = stats.audioPacketsReceived || 0;
    var audioOnly = !frames && audio > 0 && session.pc.getTransceivers().every(function (t) {
      return t.receiver.track.kind !== 'video' || t.currentDirection === 'inactive';
    });
    var now = Date.now();
    if (frames > rtcProgress.frames || (audioOnly && audio > rtcProgress.audio)) rtcProgress.at = now;
    rtcProgress.frames = frames;
    rtcProgress.audio = audio;
    if (stats.firstFrameMs === null && (frames > 0 || audioOnly)) gotFirstFrame(source, session);
    stats.playing = rtcAdvancing();
    if (stats.firstFrameMs !== null && now - rtcProgress.at > STALL_MS) {
      rtcFailed(source, 'no media for ' + STALL_MS / 1000 + ' s');
    }
  }

  function rtcAdvancing() {
    return rtc !== null && rtcProgress.at > 0 && stats.firstFrameMs !== null &&
      Date.now() - rtcProgress.at < ADVANCING_MS;
  }

  // ------------------------------------------------------------------ measurements

  function bufferAhead() {
    var ranges = video.buffered;
    for (var i = 0; i < ranges.length; i++) {
      if (ranges.start(i) <= video.currentTime + 0.1 && video.currentTime <= ranges.end(i)) {
        return ranges.end(i) - video.currentTime;
      }
    }
    return 0;
  }

  function finiteOrNull(value) {
    return typeof value === 'number' && isFinite(value) ? value : null;
  }

  function measure() {
    var pdt = null;
    var edge = null;
    var target = null;
    if (hls) {
      var date = hls.playingDate;
      if (date && video.currentTime > 0) pdt = (Date.now() - date.getTime()) / 1000;
      // hls.latency is 0 until the first playlist and timeupdate: that is "unknown", not 0 s.
      edge = hls.latency > 0 ? hls.latency : null;
      target = hls.targetLatency;
    } else if (stats.mode === 'native') {
      var start = typeof video.getStartDate === 'function' ? video.getStartDate() : null;
      if (start && isFinite(start.getTime()) && video.currentTime > 0) {
        pdt = (Date.now() - start.getTime()) / 1000 - video.currentTime;
      }
      if (video.seekable.length) {
        edge = video.seekable.end(video.seekable.length - 1) - video.currentTime;
      }
    }
    stats.pdtLatency = finiteOrNull(pdt);
    stats.edgeLatency = finiteOrNull(edge);
    stats.targetLatency = finiteOrNull(target);
    if (stats.pdtLatency !== null) {
      stats.latency = stats.pdtLatency;
      stats.latencySource = 'pdt';
    } else if (stats.edgeLatency !== null) {
      stats.latency = stats.edgeLatency;
      stats.latencySource = 'edge';
    } else {
      stats.latency = null;
      stats.latencySource = null;
    }
    stats.currentTime = video.currentTime;
    stats.buffered = bufferAhead();
    stats.playbackRate = video.playbackRate;
    if (stats.mode === 'webrtc') {
      // A MediaStream is "playing" even while no frame arrives: only decoded frames count.
      stats.playing = rtcAdvancing();
      pollRtcStats(currentSource);
    } else {
      stats.playing = !video.paused && !video.ended && video.readyState >= 3;
    }
    stats.updatedAt = Date.now();
    render();
  }

  function seconds(value) {
    return value === null ? '–' : value.toFixed(2) + ' s';
  }

  // The five stat boxes show HLS figures or WebRTC ones; their labels follow.
  var LABELS = {
    hls: ['Latency', 'Target', 'Buffer ahead', 'Rate', 'Player'],
    webrtc: ['Jitter buffer', 'Frames', 'Resolution', 'Codecs', 'Player'],
  };

  function setLabels(webrtc) {
    if (webrtc === rtcRendered) return;
    rtcRendered = webrtc;
    var names = webrtc ? LABELS.webrtc : LABELS.hls;
    [el.latency, el.target, el.buffer, el.rate, el.mode].forEach(function (value, i) {
      value.previousElementSibling.textContent = names[i];
      value.title = '';
    });
    el.rate.classList.toggle('small', webrtc);
  }

  function shortCodec(mime) {
    return mime ? mime.replace(/^[a-z]+\//i, '') : null;
  }

  function renderWebRTC() {
    setLabels(true);
    var jitter = stats.jitterBufferDelayMs;
    el.latency.textContent = jitter === null ? '–' : Math.round(jitter) + ' ms';
    el.latency.className = 'value';
    el.latency.title = 'average time a video frame waited in the jitter buffer' +
      (stats.firstFrameMs !== null ? '; first frame ' + stats.firstFrameMs + ' ms after the request' : '');
    el.target.textContent = stats.framesDecoded === null ? '–' : String(stats.framesDecoded);
    el.target.title = stats.framesDecoded === null ? '' : 'decoded; received ' + stats.framesReceived +
      ', dropped ' + stats.framesDropped + ', key frames ' + stats.keyFramesDecoded +
      ', freezes ' + stats.freezeCount;
    el.buffer.textContent = stats.frameWidth ? stats.frameWidth + '×' + stats.frameHeight : '–';
    var codecs = [shortCodec(stats.videoCodec), shortCodec(stats.audioCodec)].filter(Boolean);
    el.rate.textContent = codecs.length ? codecs.join(' · ') : '–';
    el.rate.title = stats.audioPacketsReceived === null ? '' : 'audio packets received ' +
      stats.audioPacketsReceived + ', lost ' + stats.audioPacketsLost;
    el.mode.textContent = 'WebRTC' + (stats.connectionState && stats.connectionState !== 'connected' ? ' · ' + stats.connectionState : '');
    el.mode.title = 'WHEP attempts: ' + stats.whepAttempts;
  }

  function render() {
    if (stats.mode === 'webrtc') {
      renderWebRTC();
      return;
    }
    setLabels(false);
    el.latency.textContent = seconds(stats.latency);
    el.latency.className = 'value ' + (stats.latency === null ? '' : stats.latency <= 2 ? 'good' : stats.latency <= 5 ? 'warn' : 'bad');
    el.latency.title = stats.latencySource === 'pdt'
      ? 'from PROGRAM-DATE-TIME' + (stats.edgeLatency !== null ? '; live edge: ' + seconds(stats.edgeLatency) : '')
      : stats.latencySource === 'edge' ? 'from the live edge (no PROGRAM-DATE-TIME)' : '';
    el.target.textContent = seconds(stats.targetLatency);
    el.buffer.textContent = seconds(stats.buffered);
    el.rate.textContent = stats.playbackRate.toFixed(2) + '×';
    el.mode.textContent = stats.mode === 'hls.js' ? 'hls.js ' + stats.hlsVersion : stats.mode || '–';
    el.mode.title = stats.fallbackReason ? 'WebRTC was not used: ' + stats.fallbackReason : '';
  }

  // ------------------------------------------------------------------ go

  // WebRTC unless HLS is asked for (player=hls|native, a playlist URL, classic HLS) or the
  // browser cannot: returns null for WebRTC, else why not (an empty string when asked for).
  function whyNotWebRTC(source) {
    if (forcedPlayer === 'hls' || forcedPlayer === 'native') return '';
    if (forcedPlayer !== 'webrtc' && params.get('ll') === '0') return '';
    if (!source.whep) return forcedPlayer === 'webrtc' ? 'player=webrtc needs a channel, not src' : '';
    if (typeof window.RTCPeerConnection !== 'function') return 'this browser has no WebRTC';
    if (!window.BridgeWebRTC) return 'webrtc.js did not load';
    return null;
  }

  var currentSource = resolveSource();
  if (!currentSource.error && forcedPlayer !== null && ['webrtc', 'hls', 'native'].indexOf(forcedPlayer) < 0) {
    currentSource = { error: 'player must be webrtc, hls or native' };
  }
  if (currentSource.error) {
    reportError('setup', 'bad-url', currentSource.error);
    setStatus(currentSource.error);
  } else {
    stats.src = currentSource.url;
    el.title.textContent = currentSource.label;
    document.title = 'bridge · ' + currentSource.label;
    var notWebRTC = whyNotWebRTC(currentSource);
    if (notWebRTC === null) {
      startWebRTC(currentSource);
    } else if (forcedPlayer === 'webrtc') {
      reportError('setup', 'webrtc', notWebRTC);
      setStatus('Cannot play: ' + notWebRTC + '.');
    } else if (notWebRTC) {
      fallBack(currentSource, notWebRTC);
    } else {
      start(currentSource);
    }
  }
  setInterval(measure, TICK_MS);
  measure();
})();
