// The dashboard's only script. Every page works without it; it adds a "select all" box to task
// tables and asks before a bulk action on the selected tasks.
document.addEventListener("DOMContentLoaded", () => {
  for (const all of document.querySelectorAll("input.select-all")) {
    all.addEventListener("change", () => {
      for (const box of all.closest("form").querySelectorAll('input[name="id"]')) box.checked = all.checked;
    });
  }
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (event) => {
      const picked = button.form.querySelectorAll('input[name="id"]:checked').length;
      if (picked === 0) { event.preventDefault(); window.alert("Select tasks first."); return; }
      if (!window.confirm(button.dataset.confirm + " (" + picked + ")")) event.preventDefault();
    });
  }
});
