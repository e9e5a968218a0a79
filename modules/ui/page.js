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
}
