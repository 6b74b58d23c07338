// bridge's WebRTC-over-HTTP client: WHEP (play) and WHIP (publish), no dependencies.
//
//   BridgeWebRTC.fetchIceServers(url, {token})          -> Promise<RTCIceServer[]>
//   BridgeWebRTC.whep(url, videoElement, opts)          -> Promise<session>
//   BridgeWebRTC.whip(url, mediaStream, opts)           -> Promise<session>
//   BridgeWebRTC.parseLinkHeader(value)                 -> [{uri, params}]
//
// A session is {pc, location, etag, iceServers, stream, postedAt, answeredAt, ended, stop()}.
// `stop()` closes the peer connection and DELETEs the session URL (also done on `pagehide`).
// Failed requests reject with a BridgeWebRTC.HttpError: {status, retryAfter (s or null), detail}.
//
// Options of both: token (Bearer), iceServers (skip the OPTIONS request), gatherTimeoutMs,
// onEnded(reason) (the connection failed or the server closed it; called once, not after stop()).
// whep also: onPlayError(error) (video.play() refused, e.g. autoplay policy).
// whip also: videoCodec 'h264' | 'vp8' | 'vp9' | null (null: the browser's own order).
//
// Protocol: RFC 9725 (WHIP) and draft-ietf-wish-whep. The offer waits for ICE gathering (up to
// gatherTimeoutMs) so that it carries the candidates: the server does not trickle and a single
// round trip is the fastest start. Candidates found later go out in one PATCH
// (application/trickle-ice-sdpfrag, RFC 8840) once gathering completes.
(function (global) {
  'use strict';

  const GATHER_TIMEOUT_MS = 1500;
  // Host candidates come in milliseconds; a late STUN/TURN answer is trickled, but a server
  // that is down must not hold the PATCH forever.
  const LATE_GATHER_TIMEOUT_MS = 10000;
  const REQUEST_TIMEOUT_MS = 10000;
  const OPTIONS_TIMEOUT_MS = 3000;
  // A short network blip shows as "disconnected" and often recovers by itself.
  const DISCONNECT_GRACE_MS = 5000;
  const MAX_DETAIL = 300;
  const ICE_SCHEMES = /^(stun|stuns|turn|turns):/i;

  class HttpError extends Error {
    constructor(status, detail, retryAfter) {
      super('HTTP ' + status + (detail ? ': ' + detail : ''));
      this.name = 'HttpError';
      this.status = status;
      this.detail = detail || '';
      this.retryAfter = retryAfter;
    }
  }

  // ------------------------------------------------------------------ Link header (RFC 8288)

  // fetch() joins repeated headers with ", ", and commas may also sit inside quoted values or
  // URIs, so this walks the text instead of splitting it.
  function parseLinkHeader(value) {
    const links = [];
    const text = String(value || '');
    let i = 0;
    const skip = (chars) => { while (i < text.length && chars.indexOf(text[i]) >= 0) i++; };
    while (i < text.length) {
      skip(' \t,');
      if (text[i] !== '<') {
        // Not a link-value: resynchronise at the next top-level comma.
        while (i < text.length && text[i] !== ',') i++;
        continue;
      }
      const end = text.indexOf('>', i + 1);
      if (end < 0) break;
      const link = { uri: text.slice(i + 1, end).trim(), params: {} };
      i = end + 1;
      for (;;) {
        skip(' \t');
        if (text[i] !== ';') break;
        i++;
        skip(' \t');
        let name = '';
        while (i < text.length && '=;, \t'.indexOf(text[i]) < 0) name += text[i++];
        skip(' \t');
        let val = '';
        if (text[i] === '=') {
          i++;
          skip(' \t');
          if (text[i] === '"') {
            i++;
            while (i < text.length && text[i] !== '"') {
              if (text[i] === '\\' && i + 1 < text.length) i++;
              val += text[i++];
            }
            i++;
          } else {
            while (i < text.length && ';, \t'.indexOf(text[i]) < 0) val += text[i++];
          }
        }
        // The first occurrence of a parameter wins (RFC 8288 section 3).
        name = name.toLowerCase();
        if (name && !(name in link.params)) link.params[name] = val;
      }
      links.push(link);
    }
    return links;
  }

  function iceServersFromLinks(headerValue) {
    const servers = [];
    for (const link of parseLinkHeader(headerValue)) {
      const rels = (link.params.rel || '').toLowerCase().split(/\s+/);
      if (rels.indexOf('ice-server') < 0 || !ICE_SCHEMES.test(link.uri)) continue;
      const server = { urls: link.uri };
      // Only "password" credentials exist in browsers today; drop the server otherwise rather
      // than let the RTCPeerConnection constructor throw.
      const type = (link.params['credential-type'] || 'password').toLowerCase();
      if ('username' in link.params || 'credential' in link.params) {
        if (type !== 'password') continue;
        server.username = link.params.username || '';
        server.credential = link.params.credential || '';
      } else if (/^turns?:/i.test(link.uri)) {
        continue;  // TURN without credentials is refused by the browser
      }
      servers.push(server);
    }
    return servers;
  }

  // ------------------------------------------------------------------ HTTP

  function authHeaders(token, extra) {
    const headers = Object.assign({}, extra || {});
    if (token) headers.Authorization = 'Bearer ' + token;
    return headers;
  }

  async function request(url, init, timeoutMs) {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller ? setTimeout(() => controller.abort(), timeoutMs) : null;
    try {
      return await fetch(url, Object.assign({ cache: 'no-store', signal: controller && controller.signal }, init));
    } catch (error) {
      if (error && error.name === 'AbortError') {
        throw new Error((init.method || 'GET') + ' ' + url + ' got no answer within ' + timeoutMs / 1000 + ' s');
      }
      throw error;
    } finally {
      if (timer !== null) clearTimeout(timer);
    }
  }

  // Retry-After is either delta-seconds or an HTTP-date (RFC 9110 section 10.2.3).
  function parseRetryAfter(value) {
    if (!value) return null;
    const trimmed = value.trim();
    if (/^\d+$/.test(trimmed)) return parseInt(trimmed, 10);
    const date = Date.parse(trimmed);
    return isFinite(date) ? Math.max(0, (date - Date.now()) / 1000) : null;
  }

  // A short human-readable reason from a text or RFC 9457 problem+json error body.
  async function errorDetail(response) {
    let text = '';
    try {
      text = await response.text();
    } catch (e) {
      return '';
    }
    const type = response.headers.get('Content-Type') || '';
    if (/json/i.test(type)) {
      try {
        const problem = JSON.parse(text);
        text = [problem.title, problem.detail].filter(Boolean).join(': ') || text;
      } catch (e) { /* not JSON after all: keep the text */ }
    }
    text = text.replace(/\s+/g, ' ').trim();
    return text.length > MAX_DETAIL ? text.slice(0, MAX_DETAIL) + '…' : text;
  }

  async function fetchIceServers(url, opts) {
    const options = opts || {};
    try {
      const response = await request(url, { method: 'OPTIONS', headers: authHeaders(options.token) }, OPTIONS_TIMEOUT_MS);
      if (!response.ok) return [];
      return iceServersFromLinks(response.headers.get('Link'));
    } catch (e) {
      // OPTIONS is optional in WHIP/WHEP: no answer means "no ICE servers", not "no service".
      return [];
    }
  }

  // ------------------------------------------------------------------ ICE

  function waitForGathering(pc, timeoutMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (complete) => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve(complete);
      };
      const check = () => { if (pc.iceGatheringState === 'complete') done(true); };
      const timer = setTimeout(() => done(false), timeoutMs);
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  // Foundation, component, transport, priority, address, port: the SDP form of a candidate
  // lacks the extensions (ufrag, network-cost) that the icecandidate event's string carries.
  function candidateKey(text) {
    return text.replace(/^a=/, '').trim().split(/\s+/).slice(0, 6).join(' ');
  }

  function sdpAttribute(sdp, name) {
    const match = new RegExp('^a=' + name + ':(.*)$', 'm').exec(sdp);
    return match ? match[1].trim() : null;
  }

  // RFC 8840 fragment: session-level ICE credentials, then per m-line (by mid) its candidates.
  function sdpFragment(sdp, candidates, complete) {
    const lines = ['a=ice-ufrag:' + sdpAttribute(sdp, 'ice-ufrag'), 'a=ice-pwd:' + sdpAttribute(sdp, 'ice-pwd')];
    const byMid = new Map();
    for (const candidate of candidates) {
      const mid = candidate.sdpMid || '0';
      if (!byMid.has(mid)) byMid.set(mid, []);
      byMid.get(mid).push(candidate.candidate);
    }
    for (const [mid, list] of byMid) {
      lines.push('m=audio 9 RTP/AVP 0', 'a=mid:' + mid);
      for (const line of list) lines.push('a=' + line);
      if (complete) lines.push('a=end-of-candidates');
    }
    return lines.join('\r\n') + '\r\n';
  }

  // ------------------------------------------------------------------ sessions

  function createSession(kind, url, pc, options) {
    const session = {
      kind: kind,
      url: url,
      pc: pc,
      location: null,
      etag: null,
      iceServers: [],
      stream: null,
      postedAt: null,
      answeredAt: null,
      ended: null,
      stopped: false,
    };
    const onPageHide = () => { session.stop(); };
    let disconnectTimer = null;

    function end(reason) {
      if (session.stopped || session.ended) return;
      session.ended = reason;
      if (typeof options.onEnded === 'function') options.onEnded(reason);
    }

    pc.addEventListener('connectionstatechange', () => {
      const state = pc.connectionState;
      if (disconnectTimer !== null && state !== 'disconnected') {
        clearTimeout(disconnectTimer);
        disconnectTimer = null;
      }
      if (state === 'failed') end('the WebRTC connection failed (ICE or DTLS)');
      else if (state === 'closed') end('the WebRTC connection closed');
      else if (state === 'disconnected' && disconnectTimer === null) {
        disconnectTimer = setTimeout(() => { disconnectTimer = null; end('the WebRTC connection was lost'); }, DISCONNECT_GRACE_MS);
      }
    });

    // A server that closes the session sends a DTLS close_notify: the transport closes although
    // the peer connection's own state can stay "connected" for a while.
    session.watchTransport = () => {
      const transceiver = pc.getTransceivers()[0];
      const transport = transceiver && (transceiver.receiver.transport || transceiver.sender.transport);
      if (!transport || typeof transport.addEventListener !== 'function') return;
      transport.addEventListener('statechange', () => {
        if (transport.state === 'closed') end('the server closed the session');
        else if (transport.state === 'failed') end('DTLS failed');
      });
    };

    session.stop = () => {
      if (session.stopped) return Promise.resolve();
      session.stopped = true;
      if (disconnectTimer !== null) clearTimeout(disconnectTimer);
      global.removeEventListener('pagehide', onPageHide);
      try { pc.close(); } catch (e) { /* already closed */ }
      if (!session.location) return Promise.resolve();
      // keepalive lets the DELETE outlive the page when this runs from pagehide.
      return fetch(session.location, {
        method: 'DELETE', keepalive: true, headers: authHeaders(options.token),
      }).then(() => undefined, () => undefined);
    };
    global.addEventListener('pagehide', onPageHide);
    return session;
  }

  // Offer (after gathering), POST, answer; late candidates in one PATCH.
  async function negotiate(session, options) {
    const pc = session.pc;
    const seen = [];
    let gatheringDone = false;
    const gathered = new Promise((resolve) => {
      pc.addEventListener('icecandidate', (event) => {
        if (event.candidate && event.candidate.candidate) seen.push(event.candidate);
        else if (!event.candidate) { gatheringDone = true; resolve(); }
      });
    });
    await pc.setLocalDescription(await pc.createOffer());
    const complete = await waitForGathering(pc, options.gatherTimeoutMs || GATHER_TIMEOUT_MS);
    const offer = pc.localDescription.sdp;

    session.postedAt = performance.now();
    const response = await request(session.url, {
      method: 'POST',
      headers: authHeaders(options.token, { 'Content-Type': 'application/sdp' }),
      body: offer,
    }, REQUEST_TIMEOUT_MS);
    if (response.status !== 201) {
      const detail = await errorDetail(response);
      throw new HttpError(response.status, detail, parseRetryAfter(response.headers.get('Retry-After')));
    }
    const answer = await response.text();
    session.answeredAt = performance.now();
    const location = response.headers.get('Location');
    if (!location) throw new Error('the server answered 201 without a Location header');
    session.location = new URL(location, response.url).href;
    session.etag = response.headers.get('ETag');
    session.iceServers = iceServersFromLinks(response.headers.get('Link'));
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    session.watchTransport();

    if (!complete) {
      const timeout = new Promise((resolve) => setTimeout(resolve, LATE_GATHER_TIMEOUT_MS));
      Promise.race([gathered, timeout]).then(() => {
        const sent = new Set(offer.split(/\r?\n/).filter((l) => l.indexOf('a=candidate:') === 0).map(candidateKey));
        const late = seen.filter((c) => !sent.has(candidateKey(c.candidate)));
        if (!late.length || session.stopped) return;
        request(session.location, {
          method: 'PATCH',
          headers: authHeaders(options.token, { 'Content-Type': 'application/trickle-ice-sdpfrag' }),
          body: sdpFragment(offer, late, gatheringDone),
        }, REQUEST_TIMEOUT_MS).catch(() => { /* optional: the offer's candidates may do */ });
      });
    }
  }

  async function peerConnection(url, options) {
    const iceServers = Array.isArray(options.iceServers) ? options.iceServers : await fetchIceServers(url, options);
    try {
      return new RTCPeerConnection({ iceServers: iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    } catch (e) {
      // A malformed server entry must not stop playback on a LAN, where host candidates do.
      return new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    }
  }

  async function whep(url, videoElement, opts) {
    const options = opts || {};
    const pc = await peerConnection(url, options);
    const session = createSession('whep', url, pc, options);
    session.stream = new MediaStream();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addEventListener('track', (event) => {
      session.stream.addTrack(event.track);
      if (!videoElement) return;
      if (videoElement.srcObject !== session.stream) videoElement.srcObject = session.stream;
      const playing = videoElement.play();
      if (playing && playing.catch) {
        playing.catch((error) => {
          if (typeof options.onPlayError === 'function' && !session.stopped) options.onPlayError(error);
        });
      }
    });
    try {
      await negotiate(session, options);
    } catch (error) {
      session.stop();
      throw error;
    }
    return session;
  }

  // Codec order for setCodecPreferences: the wanted codec first (for H.264 packetization-mode 1
  // and Constrained Baseline first, which is what the server forwards untouched), the rest after
  // so that RTX/RED/FEC and a fallback codec stay negotiable.
  function preferredCodecs(kind, wanted) {
    const mime = (kind + '/' + wanted).toLowerCase();
    const caps = RTCRtpReceiver.getCapabilities(kind);
    const codecs = caps ? caps.codecs : [];
    const rank = (codec) => {
      const fmtp = codec.sdpFmtpLine || '';
      let score = 0;
      if (/packetization-mode=1/.test(fmtp)) score -= 2;
      if (/profile-level-id=42e0/i.test(fmtp)) score -= 1;
      return score;
    };
    const chosen = codecs.filter((c) => c.mimeType.toLowerCase() === mime);
    if (!chosen.length) return null;
    chosen.sort((a, b) => rank(a) - rank(b));
    return chosen.concat(codecs.filter((c) => c.mimeType.toLowerCase() !== mime));
  }

  function canSend(kind, wanted) {
    const caps = typeof RTCRtpSender.getCapabilities === 'function' ? RTCRtpSender.getCapabilities(kind) : null;
    const mime = (kind + '/' + wanted).toLowerCase();
    return !!caps && caps.codecs.some((c) => c.mimeType.toLowerCase() === mime);
  }

  async function whip(url, mediaStream, opts) {
    const options = opts || {};
    const wanted = options.videoCodec ? String(options.videoCodec).toLowerCase() : null;
    const names = { h264: 'H264', vp8: 'VP8', vp9: 'VP9', av1: 'AV1' };
    if (wanted && !names[wanted]) throw new Error('unknown video codec ' + options.videoCodec);
    if (wanted && !canSend('video', names[wanted])) {
      throw new Error('this browser cannot send ' + names[wanted] + ' video');
    }
    const pc = await peerConnection(url, options);
    const session = createSession('whip', url, pc, options);
    session.stream = mediaStream;
    try {
      // WHIP: one MediaStream, at most one audio and one video track.
      const audio = mediaStream.getAudioTracks()[0];
      const video = mediaStream.getVideoTracks()[0];
      if (!audio && !video) throw new Error('the media stream has no track to publish');
      if (audio) pc.addTransceiver(audio, { direction: 'sendonly', streams: [mediaStream] });
      if (video) {
        const transceiver = pc.addTransceiver(video, { direction: 'sendonly', streams: [mediaStream] });
        if (wanted) {
          const codecs = preferredCodecs('video', names[wanted]);
          if (codecs && typeof transceiver.setCodecPreferences === 'function') transceiver.setCodecPreferences(codecs);
        }
      }
      await negotiate(session, options);
    } catch (error) {
      session.stop();
      throw error;
    }
    return session;
  }

  global.BridgeWebRTC = {
    HttpError: HttpError,
    fetchIceServers: fetchIceServers,
    whep: whep,
    whip: whip,
    parseLinkHeader: parseLinkHeader,
    iceServersFromLinks: iceServersFromLinks,
    parseRetryAfter: parseRetryAfter,
  };
})(window);
