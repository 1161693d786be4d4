// The photo, clickable: a click selects the object under it (SAM point prompt), Shift-click adds a part,
// Alt-click takes one out (or pick the mode with the buttons); the next instruction edits the selection.
// Props (set by chat_ui/app.py): src, alt, width, height (the image's pixels), image (its key), points
// [[x, y, label]], status (what the last click did), clickable, download {href, name}, version.
import { useRef, useState } from "react";

const MODES = [
  ["select", "Select", "Click an object to select it"],
  ["add", "Add a part", "Clicks add to the selection (or hold Shift)"],
  ["remove", "Remove a part", "Clicks take parts out of the selection (or hold Alt)"],
];

export default function PhotoPicker() {
  const [mode, setMode] = useState("select");
  const [busy, setBusy] = useState(false);
  const picture = useRef(null);
  const clickable = props.clickable !== false;

  const send = async (name, payload) => {
    setBusy(true);
    try {
      await callAction({ name, payload: { ...payload, image: props.image, element: props.element,
                                          message: props.message } });
    } finally {
      setBusy(false);
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
      <div className="relative max-w-full self-start" style={{ width: "fit-content" }}>
        <img
          ref={picture}
          src={props.src}
          alt={props.alt}
          width={props.width}
          height={props.height}
          onClick={onClick}
          className={"block max-w-full h-auto rounded-md " + (clickable ? "cursor-crosshair" : "")}
          style={{ maxHeight: "480px", width: "auto" }}
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
            Selecting…
          </span>
        ) : null}
      </div>
      <div className="flex flex-wrap items-center gap-1 text-sm" role="toolbar" aria-label="Photo tools">
        {clickable
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
        {props.version ? <span className="text-muted-foreground ml-1">{props.version}</span> : null}
      </div>
      {props.status ? (
        <p className="text-sm text-muted-foreground m-0" aria-live="polite" data-testid="picker-status">
          {props.status}
        </p>
      ) : null}
    </div>
  );
}
