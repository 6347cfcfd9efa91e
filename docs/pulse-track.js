// Audience Pulse browser tracking: page views and clicks to the collector.
// Usage:
//   <script src="/pulse-track.js"></script>
//   <script>
//     pulseTrack.init({ endpoint: "https://pulse.example.com/v1/events", key: "<public web key>",
//                       userId: "u-123", attributes: { country: "DE", plan: "free" } });
//     pulseTrack.pageView({ contentId: "article-42" });
//     document.querySelector("#buy").addEventListener("click", () => pulseTrack.track("click", { contentId: "buy" }));
//   </script>
// Events are batched and sent every 2 s (and when the page is hidden), as one JSON array.
// The collector's origin must be listed in collector.cors.allowed_origins.
(function (global) {
  "use strict";
  let config = null;
  let queue = [];
  let shownAt = Date.now();

  function id() {
    return (global.crypto && crypto.randomUUID) ? crypto.randomUUID() : Date.now() + "-" + Math.random().toString(16).slice(2);
  }

  function track(type, fields) {
    if (!config) return;
    const event = { event_id: id(), type: type, user_id: config.userId, timestamp: new Date().toISOString(),
                    session_id: config.sessionId, attributes: config.attributes };
    if (fields && fields.contentId) event.content_id = fields.contentId;
    if (fields && fields.dwellMs !== undefined) event.dwell_ms = Math.max(0, Math.round(fields.dwellMs));
    if (fields && fields.value !== undefined) event.value = fields.value;
    queue.push(event);
  }

  function flush(useBeacon) {
    if (!config || queue.length === 0) return;
    const batch = queue;
    queue = [];
    const body = JSON.stringify(batch);
    // keepalive lets the request finish when the page goes away; retries reuse event ids,
    // which the service de-duplicates.
    fetch(config.endpoint, { method: "POST", body: body, keepalive: useBeacon === true,
                             headers: { "Content-Type": "application/json", "Authorization": "Bearer " + config.key } })
      .then(function (response) { if (response.status === 503) queue = batch.concat(queue); })
      .catch(function () { queue = batch.concat(queue); });
  }

  global.pulseTrack = {
    init: function (options) {
      config = { endpoint: options.endpoint, key: options.key, userId: options.userId,
                 sessionId: options.sessionId || id(), attributes: options.attributes || {} };
      setInterval(flush, 2000);
      document.addEventListener("visibilitychange", function () {
        if (document.visibilityState === "hidden") {
          track("page_view_end", { dwellMs: Date.now() - shownAt });
          flush(true);
        } else {
          shownAt = Date.now();
        }
      });
    },
    pageView: function (fields) { shownAt = Date.now(); track("page_view", fields); },
    track: track,
    flush: flush,
  };
})(window);
