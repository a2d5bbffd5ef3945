"""Draw the app's icon, assets/icons/cnnviz.png: a 4x4 grid with a 2x2 filter window on it.

Served from the app itself (st.set_page_config(page_icon=...)): a Material icon as page icon
makes every browser fetch it from Google's font CDN, which fails quietly offline.

    python scripts/make_icon.py
"""

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "assets" / "icons" / "cnnviz.png"
SIZE, CELLS, PAD = 64, 4, 4
BLUE, AMBER, RED, WHITE = "#1f6feb", "#f59e0b", "#dc2626", "#ffffff"


def main() -> None:
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    cell = (SIZE - 2 * PAD) / CELLS
    for r in range(CELLS):
        for c in range(CELLS):
            x0, y0 = PAD + c * cell, PAD + r * cell
            fill = RED if (r + c) % 3 == 0 else BLUE
            draw.rectangle([x0 + 1, y0 + 1, x0 + cell - 2, y0 + cell - 2], fill=fill)
    draw.rectangle([PAD, PAD, PAD + 2 * cell - 1, PAD + 2 * cell - 1], outline=AMBER, width=4)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    image.save(OUT, optimize=True)
    print(OUT)


if __name__ == "__main__":
    main()
