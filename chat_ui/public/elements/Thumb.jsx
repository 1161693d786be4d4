// A small picture in the conversation (chat_ui/panel.py thumb): the photo being edited lives in the side
// panel; this is a record of what a turn showed. No tools, no counts that go stale; a click opens the panel.
// Props: src, alt (what it shows), label (a fact that stays true: "v3").
export default function Thumb() {
  return (
    <button
      type="button"
      onClick={() => callAction({ name: "open_panel", payload: {} })}
      title="Open the photo panel"
      aria-label={`${props.alt}: open the photo panel`}
      data-testid="thumb"
      className="flex items-end gap-2 self-start p-0 border-0 bg-transparent cursor-pointer text-left"
      style={{ width: "fit-content" }}
    >
      <img src={props.src} alt={props.alt} className="block rounded-md border"
           style={{ maxHeight: "56px", maxWidth: "96px", width: "auto", height: "auto" }} />
      {props.label ? <span className="text-xs text-muted-foreground">{props.label}</span> : null}
    </button>
  );
}
