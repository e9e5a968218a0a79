() => {
    // Page behaviour that Gradio has no setting for (A1111 keeps the same in its javascript/ folder).
    // __TOOLTIPS__ and __THEME__ are filled in by modules/ui/layout.py.
    const tooltips = __TOOLTIPS__;
    const theme = __THEME__;
    if (theme === "dark") document.body.classList.add("dark");
    if (theme === "light") document.body.classList.remove("dark");

    const setTitles = () => {
        document.querySelectorAll("button.tool").forEach((button) => {
            const title = tooltips[button.textContent.trim()];
            if (title && !button.title) button.title = title;
        });
    };
    new MutationObserver(setTitles).observe(document.body, {childList: true, subtree: true});
    setTitles();

    // Ctrl+Enter (Cmd+Enter) in a prompt box starts the generation of that tab, as in A1111.
    document.addEventListener("keydown", (event) => {
        if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
        const box = event.target.closest && event.target.closest("[id$='_prompt']");
        if (!box) return;
        const tab = box.id.startsWith("img2img") ? "img2img" : "txt2img";
        const button = document.getElementById(tab + "_generate");
        if (button && button.offsetParent !== null) {
            event.preventDefault();
            button.click();
        }
    });

    // Ctrl+Up / Ctrl+Down (Cmd on macOS) in a prompt box: A1111's "edit attention". The selection, else the
    // (text:weight) or <name:multiplier> block around the cursor, else the word under it, gets its weight raised or
    // lowered: by 0.1 for (text:weight) (wrapping plain text as (text:1.1); a weight back at 1 drops the brackets)
    // and by 0.05 for the last number of a <lora:name:multiplier> tag.
    const STEP = {"(": 0.1, "<": 0.05};
    const DELIMITERS = ".,\\/!?%^*;:{}=`~() \n\t";
    const round = (value, step) => Number((Math.round(value / step) * step).toFixed(String(step).split(".")[1].length));
    const enclosing = (text, start, end, open, close) => {
        const before = text.lastIndexOf(open, start - 1);
        if (before < 0 || text.lastIndexOf(close, start - 1) > before) return null;
        const after = text.indexOf(close, end);
        if (after < 0) return null;
        const inner = text.indexOf(open, before + 1);
        if (inner >= 0 && inner < after && inner < start) return null;
        return [before, after + 1];
    };
    const wordAround = (text, start) => {
        let from = start;
        let to = start;
        while (from > 0 && !DELIMITERS.includes(text[from - 1])) from -= 1;
        while (to < text.length && !DELIMITERS.includes(text[to])) to += 1;
        return from < to ? [from, to] : null;
    };
    const editAttention = (area, up) => {
        const text = area.value;
        let start = area.selectionStart;
        let end = area.selectionEnd;
        let block = null;
        for (const [open, close] of [["(", ")"], ["<", ">"]]) {
            const found = enclosing(text, start, end, open, close);
            if (found) { block = [open, ...found]; break; }
        }
        let replacement;
        if (block) {
            const [open, from, to] = block;
            const body = text.slice(from + 1, to - 1);
            const colon = body.lastIndexOf(":");
            const step = STEP[open];
            let weight = colon >= 0 ? parseFloat(body.slice(colon + 1)) : NaN;
            const core = colon >= 0 && !Number.isNaN(weight) ? body.slice(0, colon) : body;
            if (Number.isNaN(weight)) weight = open === "(" ? 1.1 : 1;
            weight = round(weight + (up ? step : -step), step);
            replacement = open === "(" && weight === 1 ? core : `${open}${core}:${weight}${open === "(" ? ")" : ">"}`;
            start = from;
            end = to;
            area.setRangeText(replacement, start, end, "select");
            if (open === "(" && weight === 1) area.setSelectionRange(start, start + core.length);
            else area.setSelectionRange(start + 1, start + 1 + core.length);
        } else {
            if (start === end) {
                const word = wordAround(text, start);
                if (!word) return;
                [start, end] = word;
            }
            const core = text.slice(start, end);
            const weight = round(1 + (up ? STEP["("] : -STEP["("]), STEP["("]);
            area.setRangeText(`(${core}:${weight})`, start, end, "select");
            area.setSelectionRange(start + 1, start + 1 + core.length);
        }
        area.dispatchEvent(new Event("input", {bubbles: true}));
    };
    document.addEventListener("keydown", (event) => {
        if (!(event.ctrlKey || event.metaKey) || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
        const area = event.target;
        if (!(area instanceof HTMLTextAreaElement) || !area.closest("[id$='_prompt']")) return;
        event.preventDefault();
        editAttention(area, event.key === "ArrowUp");
    });
}
