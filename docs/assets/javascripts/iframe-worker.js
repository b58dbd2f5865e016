/* A Web Worker stand-in for pages opened from disk (file://), where Chromium refuses to start a
 * real worker. The worker's script runs in a hidden iframe of the same page instead, and messages
 * pass between the two as events. Material's search is its one user: the offline plugin would load
 * a shim like this from unpkg.com, which an offline reader cannot reach, unless a polyfill whose
 * path names "iframe-worker" is listed in mkdocs.yml (extra.polyfills), as this one is. */
(function () {
  "use strict";
  if (location.protocol !== "file:") return;

  class IframeWorker extends EventTarget {
    constructor(url) {
      super();
      this.onmessage = null;
      this.onerror = null;
      this.queue = []; // messages sent before the worker's script has loaded
      const iframe = document.createElement("iframe");
      iframe.style.display = "none";
      (document.body || document.documentElement).appendChild(iframe);
      this.iframe = iframe;
      const scope = iframe.contentWindow;
      this.scope = scope;
      scope.postMessage = (data) => setTimeout(() => this.emit(new MessageEvent("message", { data })));
      scope.importScripts = () => {
        throw new Error("importScripts is not available to a worker of a page opened from disk");
      };
      const script = scope.document.createElement("script");
      script.src = new URL(url, location.href).href;
      script.onload = () => {
        const waiting = this.queue;
        this.queue = null;
        waiting.forEach((data) => this.postMessage(data));
      };
      script.onerror = () => this.emit(new ErrorEvent("error", { message: `could not load ${url}` }));
      scope.document.head.appendChild(script);
    }

    emit(event) {
      this.dispatchEvent(event);
      const handler = event.type === "message" ? this.onmessage : this.onerror;
      if (handler) handler.call(this, event);
    }

    postMessage(data) {
      if (this.queue) {
        this.queue.push(data);
        return;
      }
      const scope = this.scope;
      setTimeout(() => scope.dispatchEvent(new scope.MessageEvent("message", { data })));
    }

    terminate() {
      this.iframe.remove();
    }
  }

  window.Worker = IframeWorker;
})();
