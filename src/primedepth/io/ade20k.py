"""ADE20K (SceneParse150) class names and colours: what PrimeDepth's 150 segmentation channels mean.

Origin: the Scene Parsing benchmark of MIT CSAIL (ADE20K, SceneParse150;
https://github.com/CSAILVision/sceneparsing). The names are those of its `objectInfo150.txt` (all
synonyms as listed there; the short name is the first), the colours those of its
`visualizationCode/color150.mat`, the palette ADE20K tools draw class maps with. Licence of that
benchmark kit: MIT-style, "Copyright (c) 2016 ADE20k" (its COPYRIGHT file). The values are
written here as data.

Channel c of the segmentation head is class c + 1 of `objectInfo150.txt`: label 0 of the
benchmark ("other objects") is not predicted, the usual 150-class convention.

Public API
----------
``ADE20K_CLASS_COUNT``  150.
``ADE20K_NAMES``  short name per channel ("wall", "building", ...).
``ADE20K_SYNONYMS``  all names of each class, as in objectInfo150.
``ADE20K_PALETTE``  (r, g, b) per channel.
``ade20k_legend(labels=None) -> dict[str, dict]``  {"index": {"name", "rgb"}} for the given
    labels (e.g. those present in a map) or for all 150.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InputError

# (r, g, b, names) per channel; the comment is the channel index (objectInfo150 index - 1).
_TABLE: tuple[tuple[int, int, int, str], ...] = (
    (120, 120, 120, "wall"),  #   0
    (180, 120, 120, "building, edifice"),  #   1
    (  6, 230, 230, "sky"),  #   2
    ( 80,  50,  50, "floor, flooring"),  #   3
    (  4, 200,   3, "tree"),  #   4
    (120, 120,  80, "ceiling"),  #   5
    (140, 140, 140, "road, route"),  #   6
    (204,   5, 255, "bed"),  #   7
    (230, 230, 230, "windowpane, window"),  #   8
    (  4, 250,   7, "grass"),  #   9
    (224,   5, 255, "cabinet"),  #  10
    (235, 255,   7, "sidewalk, pavement"),  #  11
    (150,   5,  61, "person, individual, someone, somebody, mortal, soul"),  #  12
    (120, 120,  70, "earth, ground"),  #  13
    (  8, 255,  51, "door, double door"),  #  14
    (255,   6,  82, "table"),  #  15
    (143, 255, 140, "mountain, mount"),  #  16
    (204, 255,   4, "plant, flora, plant life"),  #  17
    (255,  51,   7, "curtain, drape, drapery, mantle, pall"),  #  18
    (204,  70,   3, "chair"),  #  19
    (  0, 102, 200, "car, auto, automobile, machine, motorcar"),  #  20
    ( 61, 230, 250, "water"),  #  21
    (255,   6,  51, "painting, picture"),  #  22
    ( 11, 102, 255, "sofa, couch, lounge"),  #  23
    (255,   7,  71, "shelf"),  #  24
    (255,   9, 224, "house"),  #  25
    (  9,   7, 230, "sea"),  #  26
    (220, 220, 220, "mirror"),  #  27
    (255,   9,  92, "rug, carpet, carpeting"),  #  28
    (112,   9, 255, "field"),  #  29
    (  8, 255, 214, "armchair"),  #  30
    (  7, 255, 224, "seat"),  #  31
    (255, 184,   6, "fence, fencing"),  #  32
    ( 10, 255,  71, "desk"),  #  33
    (255,  41,  10, "rock, stone"),  #  34
    (  7, 255, 255, "wardrobe, closet, press"),  #  35
    (224, 255,   8, "lamp"),  #  36
    (102,   8, 255, "bathtub, bathing tub, bath, tub"),  #  37
    (255,  61,   6, "railing, rail"),  #  38
    (255, 194,   7, "cushion"),  #  39
    (255, 122,   8, "base, pedestal, stand"),  #  40
    (  0, 255,  20, "box"),  #  41
    (255,   8,  41, "column, pillar"),  #  42
    (255,   5, 153, "signboard, sign"),  #  43
    (  6,  51, 255, "chest of drawers, chest, bureau, dresser"),  #  44
    (235,  12, 255, "counter"),  #  45
    (160, 150,  20, "sand"),  #  46
    (  0, 163, 255, "sink"),  #  47
    (140, 140, 140, "skyscraper"),  #  48
    (250,  10,  15, "fireplace, hearth, open fireplace"),  #  49
    ( 20, 255,   0, "refrigerator, icebox"),  #  50
    ( 31, 255,   0, "grandstand, covered stand"),  #  51
    (255,  31,   0, "path"),  #  52
    (255, 224,   0, "stairs, steps"),  #  53
    (153, 255,   0, "runway"),  #  54
    (  0,   0, 255, "case, display case, showcase, vitrine"),  #  55
    (255,  71,   0, "pool table, billiard table, snooker table"),  #  56
    (  0, 235, 255, "pillow"),  #  57
    (  0, 173, 255, "screen door, screen"),  #  58
    ( 31,   0, 255, "stairway, staircase"),  #  59
    ( 11, 200, 200, "river"),  #  60
    (255,  82,   0, "bridge, span"),  #  61
    (  0, 255, 245, "bookcase"),  #  62
    (  0,  61, 255, "blind, screen"),  #  63
    (  0, 255, 112, "coffee table, cocktail table"),  #  64
    (  0, 255, 133, "toilet, can, commode, crapper, pot, potty, stool, throne"),  #  65
    (255,   0,   0, "flower"),  #  66
    (255, 163,   0, "book"),  #  67
    (255, 102,   0, "hill"),  #  68
    (194, 255,   0, "bench"),  #  69
    (  0, 143, 255, "countertop"),  #  70
    ( 51, 255,   0, "stove, kitchen stove, range, kitchen range, cooking stove"),  #  71
    (  0,  82, 255, "palm, palm tree"),  #  72
    (  0, 255,  41, "kitchen island"),  #  73
    (  0, 255, 173, "computer, computing machine, computing device, data processor, electronic computer, information processing system"),  #  74
    ( 10,   0, 255, "swivel chair"),  #  75
    (173, 255,   0, "boat"),  #  76
    (  0, 255, 153, "bar"),  #  77
    (255,  92,   0, "arcade machine"),  #  78
    (255,   0, 255, "hovel, hut, hutch, shack, shanty"),  #  79
    (255,   0, 245, "bus, autobus, coach, charabanc, double-decker, jitney, motorbus, motorcoach, omnibus, passenger vehicle"),  #  80
    (255,   0, 102, "towel"),  #  81
    (255, 173,   0, "light, light source"),  #  82
    (255,   0,  20, "truck, motortruck"),  #  83
    (255, 184, 184, "tower"),  #  84
    (  0,  31, 255, "chandelier, pendant, pendent"),  #  85
    (  0, 255,  61, "awning, sunshade, sunblind"),  #  86
    (  0,  71, 255, "streetlight, street lamp"),  #  87
    (255,   0, 204, "booth, cubicle, stall, kiosk"),  #  88
    (  0, 255, 194, "television, television receiver, television set, tv, tv set, idiot box, boob tube, telly, goggle box"),  #  89
    (  0, 255,  82, "airplane, aeroplane, plane"),  #  90
    (  0,  10, 255, "dirt track"),  #  91
    (  0, 112, 255, "apparel, wearing apparel, dress, clothes"),  #  92
    ( 51,   0, 255, "pole"),  #  93
    (  0, 194, 255, "land, ground, soil"),  #  94
    (  0, 122, 255, "bannister, banister, balustrade, balusters, handrail"),  #  95
    (  0, 255, 163, "escalator, moving staircase, moving stairway"),  #  96
    (255, 153,   0, "ottoman, pouf, pouffe, puff, hassock"),  #  97
    (  0, 255,  10, "bottle"),  #  98
    (255, 112,   0, "buffet, counter, sideboard"),  #  99
    (143, 255,   0, "poster, posting, placard, notice, bill, card"),  # 100
    ( 82,   0, 255, "stage"),  # 101
    (163, 255,   0, "van"),  # 102
    (255, 235,   0, "ship"),  # 103
    (  8, 184, 170, "fountain"),  # 104
    (133,   0, 255, "conveyer belt, conveyor belt, conveyer, conveyor, transporter"),  # 105
    (  0, 255,  92, "canopy"),  # 106
    (184,   0, 255, "washer, automatic washer, washing machine"),  # 107
    (255,   0,  31, "plaything, toy"),  # 108
    (  0, 184, 255, "swimming pool, swimming bath, natatorium"),  # 109
    (  0, 214, 255, "stool"),  # 110
    (255,   0, 112, "barrel, cask"),  # 111
    ( 92, 255,   0, "basket, handbasket"),  # 112
    (  0, 224, 255, "waterfall, falls"),  # 113
    (112, 224, 255, "tent, collapsible shelter"),  # 114
    ( 70, 184, 160, "bag"),  # 115
    (163,   0, 255, "minibike, motorbike"),  # 116
    (153,   0, 255, "cradle"),  # 117
    ( 71, 255,   0, "oven"),  # 118
    (255,   0, 163, "ball"),  # 119
    (255, 204,   0, "food, solid food"),  # 120
    (255,   0, 143, "step, stair"),  # 121
    (  0, 255, 235, "tank, storage tank"),  # 122
    (133, 255,   0, "trade name, brand name, brand, marque"),  # 123
    (255,   0, 235, "microwave, microwave oven"),  # 124
    (245,   0, 255, "pot, flowerpot"),  # 125
    (255,   0, 122, "animal, animate being, beast, brute, creature, fauna"),  # 126
    (255, 245,   0, "bicycle, bike, wheel, cycle"),  # 127
    ( 10, 190, 212, "lake"),  # 128
    (214, 255,   0, "dishwasher, dish washer, dishwashing machine"),  # 129
    (  0, 204, 255, "screen, silver screen, projection screen"),  # 130
    ( 20,   0, 255, "blanket, cover"),  # 131
    (255, 255,   0, "sculpture"),  # 132
    (  0, 153, 255, "hood, exhaust hood"),  # 133
    (  0,  41, 255, "sconce"),  # 134
    (  0, 255, 204, "vase"),  # 135
    ( 41,   0, 255, "traffic light, traffic signal, stoplight"),  # 136
    ( 41, 255,   0, "tray"),  # 137
    (173,   0, 255, "ashcan, trash can, garbage can, wastebin, ash bin, ash-bin, ashbin, dustbin, trash barrel, trash bin"),  # 138
    (  0, 245, 255, "fan"),  # 139
    ( 71,   0, 255, "pier, wharf, wharfage, dock"),  # 140
    (122,   0, 255, "crt screen"),  # 141
    (  0, 255, 184, "plate"),  # 142
    (  0,  92, 255, "monitor, monitoring device"),  # 143
    (184, 255,   0, "bulletin board, notice board"),  # 144
    (  0, 133, 255, "shower"),  # 145
    (255, 214,   0, "radiator"),  # 146
    ( 25, 194, 194, "glass, drinking glass"),  # 147
    (102, 255,   0, "clock"),  # 148
    ( 92,   0, 255, "flag"),  # 149
)

ADE20K_CLASS_COUNT = len(_TABLE)
ADE20K_SYNONYMS: tuple[tuple[str, ...], ...] = tuple(
    tuple(name.strip() for name in entry[3].split(",")) for entry in _TABLE
)
ADE20K_NAMES: tuple[str, ...] = tuple(names[0] for names in ADE20K_SYNONYMS)
ADE20K_PALETTE: tuple[tuple[int, int, int], ...] = tuple((r, g, b) for r, g, b, _ in _TABLE)


def ade20k_legend(labels: Iterable[int] | None = None) -> dict[str, dict]:
    """{"index": {"name": short name, "rgb": [r, g, b]}} for `labels` (sorted, each once), or
    for all 150 classes; keys are strings so that the mapping is JSON as it is."""
    chosen = range(ADE20K_CLASS_COUNT) if labels is None else sorted({int(label) for label in labels})
    legend = {}
    for label in chosen:
        if not 0 <= label < ADE20K_CLASS_COUNT:
            raise InputError(f"label {label} is not an ADE20K class (0 to {ADE20K_CLASS_COUNT - 1})")
        legend[str(label)] = {"name": ADE20K_NAMES[label], "rgb": list(ADE20K_PALETTE[label])}
    return legend
