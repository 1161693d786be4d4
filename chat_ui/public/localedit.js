// Accessible names for Chainlit's icon-only buttons (a screen reader otherwise hears "button").
// Chainlit renders them without aria-label or text; this names each by its id as it appears.
(function () {
  const NAMES = {
    "new-chat-button": "New chat",
    "upload-button": "Attach a photo",
    "chat-settings-open-modal": "Settings",
    "chat-submit": "Send",
    "stop-button": "Stop",
    "user-nav-button": "Account",
    "theme-toggle": "Toggle dark mode",
    "readme-button": "About localedit",
    "sidebar-trigger": "Past chats",
    "sidebar-trigger-button": "Show or hide past chats",
    "search-chats-button": "Search past chats",
    "scroll-down-button": "Scroll to the newest message",
  };
  const LUCIDE = {  // icon-only buttons without an id, named by the icon they show
    "lucide-copy": "Copy the message",
    "lucide-panel-left": "Show or hide past chats",
    "lucide-arrow-down": "Scroll to the newest message",
    "lucide-arrow-left": "Close the photo panel",
    "lucide-x": "Close",
    "lucide-search": "Search past chats",
    "lucide-ellipsis": "More",
    "lucide-square-pen": "New chat",
    "lucide-thumbs-up": "Good answer",
    "lucide-thumbs-down": "Bad answer",
    "lucide-check": "Copied",
  };
  function name(button) {
    if (button.getAttribute("aria-label") || button.textContent.trim()) return;
    let label = NAMES[button.id];
    if (!label) {
      const icon = button.querySelector("svg");
      const cls = icon ? Array.from(icon.classList).find((c) => LUCIDE[c]) : null;
      label = cls ? LUCIDE[cls] : button.getAttribute("title") || button.dataset.tooltip;
    }
    if (label) button.setAttribute("aria-label", label);
  }
  let queued = false;
  function sweep() {
    queued = false;
    document.querySelectorAll("button:not([aria-label]), [role=button]:not([aria-label])").forEach(name);
  }
  // React re-renders buttons at will: look again after every change, at most once a frame
  new MutationObserver(() => {
    if (!queued) {
      queued = true;
      requestAnimationFrame(sweep);
    }
  }).observe(document.documentElement, { childList: true, subtree: true, attributes: true,
                                         attributeFilter: ["id", "aria-label"] });
  document.addEventListener("DOMContentLoaded", sweep);
})();

// A chat's /thread/ address opened in a browser without a session (another browser, a new
// profile): Chainlit sends it to /login, signs it in and then shows "/", a new chat. Go on to the
// chat that was asked for instead.
(function () {
  if (!location.pathname.endsWith("/login") || !document.referrer) return;
  const asked = new URL(document.referrer);
  if (asked.origin !== location.origin || !/\/thread\/[\w-]+$/.test(asked.pathname)) return;
  const home = location.pathname.slice(0, -"login".length);  // "/" (or the root path + "/")
  for (const name of ["pushState", "replaceState"]) {
    const original = history[name].bind(history);
    history[name] = (state, title, url) => {
      const to = url === undefined || url === null ? null : new URL(url, location.href).pathname;
      if (to === home || to === home.replace(/\/$/, "")) {
        location.replace(asked.pathname);
        return;
      }
      return original(state, title, url);
    };
  }
})();
