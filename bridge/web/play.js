// bridge's HLS player page: hls.js in low-latency mode where Media Source Extensions exist,
// the browser's own HLS (Safari, iOS before 17.1) otherwise.
//
// Tests and benchmarks read `window.bridgeStats`, refreshed every 250 ms:
//   latency        seconds behind live (PROGRAM-DATE-TIME based when the playlist has it,
//                  else hls.js's live-edge estimate); null until known
//   latencySource  "pdt" | "edge" | null
//   pdtLatency, edgeLatency, targetLatency, buffered, playbackRate
//   currentTime    the video element's currentTime
//   playing        true while the video is actually moving (not paused, not starved)
//   errors         fatal errors, oldest first (at most 20): {at, type, details, fatal, message}
//   warnings       non-fatal ones, same shape (at most 20)
//   mode           "hls.js" | "native" | null;  hlsVersion, src, channel, restarts, ended
(function () {
  'use strict';

  var TICK_MS = 250;
  var MAX_ENTRIES = 20;
  var CHANNEL_RE = /^[A-Za-z0-9_-]{1,128}$/;
  // Back-off between restarts after a fatal error (channel not live yet, server restarted).
  var RESTART_DELAYS_MS = [1000, 2000, 4000, 8000];
  var ENDED_POLL_MS = 2000;

  var params = new URLSearchParams(window.location.search);
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
  };
  window.bridgeStats = stats;

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
    // Same origin, absolute path: the server mounts HLS at /hls/ wherever this page lives.
    return { url: '/hls/' + encodeURIComponent(channel) + '/index.m3u8', label: channel };
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
    if (video.duration === Infinity) wasLive = true;  // native HLS shows live as Infinity
  });
  video.addEventListener('ended', function () {
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
    stats.playing = !video.paused && !video.ended && video.readyState >= 3;
    stats.updatedAt = Date.now();
    render();
  }

  function seconds(value) {
    return value === null ? '–' : value.toFixed(2) + ' s';
  }

  function render() {
    el.latency.textContent = seconds(stats.latency);
    el.latency.className = 'value ' + (stats.latency === null ? '' : stats.latency <= 2 ? 'good' : stats.latency <= 5 ? 'warn' : 'bad');
    el.latency.title = stats.latencySource === 'pdt'
      ? 'from PROGRAM-DATE-TIME' + (stats.edgeLatency !== null ? '; live edge: ' + seconds(stats.edgeLatency) : '')
      : stats.latencySource === 'edge' ? 'from the live edge (no PROGRAM-DATE-TIME)' : '';
    el.target.textContent = seconds(stats.targetLatency);
    el.buffer.textContent = seconds(stats.buffered);
    el.rate.textContent = stats.playbackRate.toFixed(2) + '×';
    el.mode.textContent = stats.mode === 'hls.js' ? 'hls.js ' + stats.hlsVersion : stats.mode || '–';
  }

  // ------------------------------------------------------------------ go

  var currentSource = resolveSource();
  if (currentSource.error) {
    reportError('setup', 'bad-url', currentSource.error);
    setStatus(currentSource.error);
  } else {
    stats.src = currentSource.url;
    el.title.textContent = currentSource.label;
    document.title = 'bridge · ' + currentSource.label;
    start(currentSource);
  }
  setInterval(measure, TICK_MS);
  measure();
})();
