// The photo, clickable: a click selects the object under it (SAM point prompt), Shift-click adds a part,
// Alt-click takes one out (or pick the mode with the buttons); the next instruction edits the selection.
// Below it, the version strip: a thumbnail per version of the conversation (this photo's marked); a click
// puts that version on screen (like undo / redo; the next edit branches from it).
// It lives in the side panel (chat_ui/panel.py): the one live photo of the chat, with Undo / Redo / Show mask
// where they can do something, and the strip scrolled to the version shown.
// Props (set by chat_ui/panel.py): src, alt, width, height (the image's pixels), image (its key), points
// [[x, y, label]], status (what the last click did), clickable, answering (an open question's numbered
// picture: a click chooses, no selection modes), download {href, name}, tools {undo, redo,
// show_mask: whether each can act}, versions [{number, thumb, current, branch, instruction, scores, label}]
// (chat_ui/render.py version_cards).
import { useEffect, useRef, useState } from "react";

const MODES = [
  ["select", "Select", "Click an object to select it"],
  ["add", "Add a part", "Clicks add to the selection (or hold Shift)"],
  ["remove", "Remove a part", "Clicks take parts out of the selection (or hold Alt)"],
];
const TOOLS = [
  ["undo", "Undo", "Go back to the previous version", "Undoing…"],
  ["redo", "Redo", "Go forward again", "Redoing…"],
  ["show_mask", "Show mask", "Show the region the last edit changed", "Drawing the mask…"],
];

export default function PhotoPicker() {
  const [mode, setMode] = useState("select");
  const [busy, setBusy] = useState("");  // what is going on while an action runs ("" when idle)
  const picture = useRef(null);
  const strip = useRef(null);
  // a photo saved inline in a chat from before the side panel (no "tools" prop) is a record: no live tools
  const live = props.tools !== undefined;
  const clickable = live && props.clickable !== false;
  const tools = props.tools || {};
  // as wide as the panel, but never taller than 60 % of the screen (the aspect ratio kept)
  const fit = `min(100%, calc(60vh * ${props.width / Math.max(1, props.height)}))`;

  useEffect(() => {  // the version shown in view, however long the strip (the page itself does not scroll)
    const list = strip.current;
    const card = list && list.querySelector("[aria-current=true]");
    if (!card) return;
    const item = card.parentElement;
    list.scrollLeft = Math.max(0, item.offsetLeft - list.offsetLeft - (list.clientWidth - item.offsetWidth) / 2);
  }, [props.versions]);

  const send = async (name, payload, label) => {
    setBusy(label || (name === "version" ? `Going to version ${payload.number}…` : "Selecting…"));
    try {
      await callAction({ name, payload: { ...payload, image: props.image, element: props.element,
                                          message: props.message } });
    } finally {
      setBusy("");
    }
  };

  const onClick = (event) => {
    if (!clickable || busy || !picture.current) return;
    const box = picture.current.getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * props.width;
    const y = ((event.clientY - box.top) / box.height) * props.height;
    const how = event.shiftKey ? "add" : event.altKey ? "remove" : mode;
    send("point", { x: Math.round(x * 10) / 10, y: Math.round(y * 10) / 10, mode: how });
  };

  return (
    <div className="flex flex-col gap-2 w-full" data-testid="photo-picker">
      <div className="relative self-start" style={{ width: "100%", maxWidth: fit }}>
        <img
          ref={picture}
          src={props.src}
          alt={props.alt}
          width={props.width}
          height={props.height}
          onClick={onClick}
          className={"block w-full h-auto rounded-md " + (clickable ? "cursor-crosshair" : "")}
        />
        {(props.points || []).map(([x, y, label], i) => (
          <span
            key={i}
            aria-hidden="true"
            className="absolute rounded-full border-2 border-white pointer-events-none"
            style={{ left: `calc(${(100 * x) / props.width}% - 6px)`, top: `calc(${(100 * y) / props.height}% - 6px)`,
                     width: "12px", height: "12px", background: label ? "#16a34a" : "#dc2626" }}
          />
        ))}
        {busy ? (
          <span className="absolute inset-0 flex items-center justify-center bg-black/20 text-white text-sm rounded-md">
            {busy}
          </span>
        ) : null}
      </div>
      <div className="flex flex-wrap items-center gap-1 text-sm" role="toolbar" aria-label="Photo tools">
        {clickable && !props.answering
          ? MODES.map(([id, label, hint]) => (
              <button
                key={id}
                type="button"
                title={hint}
                aria-pressed={mode === id}
                onClick={() => setMode(id)}
                className={"px-2 py-1 rounded-md border " +
                  (mode === id ? "bg-primary text-primary-foreground border-primary" : "bg-background hover:bg-accent")}
              >
                {label}
              </button>
            ))
          : null}
        {clickable && (props.points || []).length ? (
          <button type="button" onClick={() => send("point_clear", {})} title="Forget the selection"
                  className="px-2 py-1 rounded-md border bg-background hover:bg-accent">
            Clear selection
          </button>
        ) : null}
        {props.download ? (
          <a href={props.download.href} download={props.download.name} title={`Save ${props.download.name}`}
             className="px-2 py-1 rounded-md border bg-background hover:bg-accent no-underline">
            Download
          </a>
        ) : null}
      </div>
      {TOOLS.some(([id]) => tools[id]) ? (
        <div className="flex flex-wrap items-center gap-1 text-sm" role="toolbar" aria-label="Version tools">
          {TOOLS.filter(([id]) => tools[id]).map(([id, label, hint, doing]) => (
            <button key={id} type="button" title={hint} disabled={!!busy} onClick={() => send(id, {}, doing)}
                    className="px-2 py-1 rounded-md border bg-background hover:bg-accent">
              {label}
            </button>
          ))}
        </div>
      ) : null}
      {live && (props.versions || []).length > 1 ? (
        <ol ref={strip} className="flex gap-2 overflow-x-auto pb-1 m-0 p-0 list-none max-w-full" aria-label="Versions"
            data-testid="version-strip">
          {props.versions.map((v) => (
            <li key={v.number} className="shrink-0">
              <button
                type="button"
                aria-label={v.label}
                aria-current={v.current ? "true" : undefined}
                title={v.label}
                disabled={!!busy || v.current}
                onClick={() => send("version", { number: v.number })}
                data-testid={`version-${v.number}`}
                className={"flex flex-col items-start gap-1 p-1 rounded-md border text-left " +
                  (v.current ? "border-primary cursor-default" : "bg-background hover:bg-accent")}
                style={{ width: "7rem", boxShadow: v.current ? "0 0 0 2px hsl(var(--primary))" : undefined }}
              >
                <img src={v.thumb} alt={`version ${v.number}`} className="block w-full rounded-sm"
                     style={{ height: "4rem", objectFit: "cover" }} />
                <span className="text-xs font-medium">
                  v{v.number}{v.branch ? <span className="text-muted-foreground font-normal"> {v.branch}</span> : null}
                  {v.current ? <span className="text-primary"> · shown</span> : null}
                </span>
                <span className="text-xs text-muted-foreground w-full"
                      style={{ overflow: "hidden", display: "-webkit-box", WebkitLineClamp: 2, WebkitBoxOrient: "vertical",
                               lineHeight: 1.2 }}>
                  {v.instruction}
                </span>
                {v.scores ? <span className="text-muted-foreground w-full" style={{ fontSize: "10px", lineHeight: 1.2 }}>
                  {v.scores}
                </span> : null}
              </button>
            </li>
          ))}
        </ol>
      ) : null}
      {props.status ? (
        <p className="text-sm text-muted-foreground m-0" aria-live="polite" data-testid="picker-status">
          {props.status}
        </p>
      ) : null}
    </div>
  );
}
