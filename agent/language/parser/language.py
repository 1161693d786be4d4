"""Other languages: the built-in parser reads English and says so instead of guessing
(``foreign_language``, ``foreign_share``, ``not_english_reply``); ``named_objects`` and ``asks_removal``
let the LLM path check a plan for a message in another language.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

from agent.language.parser.lexicon import EXAMPLES, PERSON_WORDS, WHOLE_IMAGE
from agent.language.parser.words import ADJECTIVES


FOREIGN_WORDS: dict[str, set[str]] = {
    "French": set("""
le la les un une des du au aux et est avec pour dans sur sous mets mettre ajoute ajouter enlève enlever enleve
retire retirer supprime supprimer efface effacer transforme transformer rends rendre fais faire peins peindre
colore voiture voitures chien chiens oiseau arbre maison ciel rouge bleu bleue vert verte jaune noir noire blanc
blanche gauche droite en de lampe s'il vous plaît plait moi ce cette ces mon ma mes ton ta qui que pas très
renard chapeau neige nuit hiver été fleur fleurs homme femme tête gâteau chaise fenêtre porte mur herbe
soleil lune nuage nuages change-le rends-le mets-lui ajoute-lui enlève-le
""".split()),
    "Spanish": set("""
el los las un una unos unas del al y con para por que quita quitar elimina eliminar borra borrar convierte
convertir cambia cambiar pon poner añade añadir agrega agregar haz hacer pinta pintar coche carro gato gatos
perro perros pájaro árbol casa cielo rojo roja azul verde amarillo negro negra blanco blanca izquierda derecha
zorro sombrero nieve noche invierno verano lámpara flor flores hombre mujer cabeza pastel silla ventana puerta
pared suelo hierba sol luna nube nubes favor este esta estos estas mi tu su muy en de lo hazlo ponle quítale
""".split()),
    "German": set("""
der die das den dem des ein eine einen und ist mit auf im zu von mach mache entferne entfernen lösche füge
hinzu färbe ändere verwandle bitte nicht katze hund vogel baum haus himmel rot rote roten blau blaue grün
grüne gelb schwarz weiß links rechts fuchs hut schnee nacht lampe blume mann frau kopf kuchen stuhl fenster
tür wand boden sonne mond wolke wolken
""".split()),
    "Italian": set("""
il lo gli una del della dei e con per che rimuovi togli elimina cancella trasforma cambia aggiungi metti fai
rendi colora gatto cane macchina uccello albero casa cielo rosso rossa blu verde giallo nero nera bianco bianca
sinistra destra volpe cappello neve notte inverno estate lampada fiore uomo donna testa torta sedia finestra
porta muro pavimento erba sole luna nuvola favore
""".split()),
    "Portuguese": set("""
o os um uma do da dos das e com para que remova remover tire tirar apague apagar transforme transformar mude
mudar adicione adicionar coloque colocar faça fazer pinte pintar gato cachorro cão carro pássaro árvore casa
céu vermelho vermelha azul verde amarelo preto preta branco branca esquerda direita raposa chapéu neve noite
inverno verão lâmpada flor homem mulher cabeça bolo cadeira janela porta parede chão grama sol lua nuvem
favor
""".split()),
}
"""Common words of the languages people most often type instead of English (verbs, objects, colours)."""

FOREIGN_OBJECTS: dict[str, str] = {
    # French
    "chat": "cat", "chats": "cat", "chien": "dog", "chiens": "dog", "voiture": "car", "voitures": "car",
    "cheval": "horse", "oiseau": "bird", "arbre": "tree", "maison": "house", "ciel": "sky", "lampe": "lamp",
    "chapeau": "hat", "fleur": "flower", "fleurs": "flower", "homme": "man", "femme": "woman", "chaise": "chair",
    "fenêtre": "window", "porte": "door", "mur": "wall", "renard": "fox", "table": "table", "canapé": "sofa",
    # Spanish
    "gato": "cat", "gatos": "cat", "perro": "dog", "perros": "dog", "coche": "car", "carro": "car",
    "caballo": "horse", "pájaro": "bird", "árbol": "tree", "casa": "house", "cielo": "sky", "lámpara": "lamp",
    "sombrero": "hat", "flor": "flower", "flores": "flower", "hombre": "man", "mujer": "woman", "silla": "chair",
    "ventana": "window", "puerta": "door", "pared": "wall", "zorro": "fox", "mesa": "table", "sofá": "sofa",
    # German
    "katze": "cat", "hund": "dog", "hunde": "dog", "auto": "car", "pferd": "horse", "vogel": "bird", "baum": "tree",
    "haus": "house", "himmel": "sky", "hut": "hat", "blume": "flower", "mann": "man", "frau": "woman",
    "stuhl": "chair", "fenster": "window", "tür": "door", "wand": "wall", "fuchs": "fox", "tisch": "table",
    # Italian
    "gatto": "cat", "cane": "dog", "macchina": "car", "cavallo": "horse", "uccello": "bird", "albero": "tree",
    "lampada": "lamp", "cappello": "hat", "fiore": "flower", "uomo": "man", "donna": "woman", "sedia": "chair",
    "finestra": "window", "volpe": "fox", "tavolo": "table", "divano": "sofa",
    # Portuguese
    "cachorro": "dog", "cão": "dog", "cavalo": "horse", "pássaro": "bird", "árvore": "tree", "céu": "sky",
    "chapéu": "hat", "homem": "man", "mulher": "woman", "cadeira": "chair", "janela": "window", "raposa": "fox",
}
"""Object words of those languages and their English: what an LLM's plan for such a message may name."""
FOREIGN_REMOVE = set("""
enlève enlever enleve enlevez retire retirer retirez supprime supprimer supprimez efface effacer effacez sans
quita quitar quítale quite elimina eliminar borra borrar saca sacar sin entferne entfernen lösche löschen ohne weg
rimuovi rimuovere togli togliere cancella cancellare elimina senza remova remover tire tirar apague apagar sem
""".split())
"""Words of those languages that ask for a removal."""


def named_objects(text: str) -> set[str]:
    """The English names of the objects a message in another language names ("quita el caballo" -> {"horse"})."""
    return {FOREIGN_OBJECTS[w] for w in _WORD_RE.findall(str(text).lower()) if w in FOREIGN_OBJECTS}


def asks_removal(text: str) -> bool:
    """Whether a message (in any of those languages or English) asks for something to be removed."""
    found = set(_WORD_RE.findall(str(text).lower()))
    return bool(found & FOREIGN_REMOVE) or bool(re.search(rf"\b(?:{_REMOVE_VERBS_EN})\b", str(text).lower()))


_REMOVE_VERBS_EN = r"remove|delete|erase|eliminate|get rid|without|take (?:out|away|off)|disappear|vanish|lose|ditch"

ENGLISH_WORDS = set("""
a i an the to of in on at it is be do no me so we he she my by or as up us am go if and are can for not
make turn change put add remove give paint color colour get take let have more less very please thanks one
two all both some any this that these those there here with from into onto over under near next left right
top bottom front back middle side corner come con pour son pan sale fin main pain lit plus place table rose
orange art mist chat coin sol mall bus car cat dog hat sun moon man tree house sky flower lamp chair
window door wall floor grass snow night winter summer spring autumn fall day pastel favor
""".split())
"""English words that some of ``FOREIGN_WORDS`` spell the same (never counted as foreign)."""

_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _latin(ch: str) -> bool:
    return ch < "\u0250" or "\u1e00" <= ch <= "\u1eff"


def _non_latin_share(text: str) -> float:
    letters = [c for c in str(text) if c.isalpha()]
    return sum(not _latin(c) for c in letters) / len(letters) if letters else 0.0


@lru_cache(maxsize=1)
def _english() -> frozenset[str]:
    """Every word the parser knows as English (``ENGLISH_WORDS`` and its lexicons)."""
    return frozenset(ENGLISH_WORDS | ADJECTIVES | WHOLE_IMAGE | PERSON_WORDS)


def _foreign_words(text: str) -> tuple[list[str], list[str]]:
    """The message's words, and those of them that ``FOREIGN_WORDS`` has and English has not."""
    found = _WORD_RE.findall(str(text).lower())
    return found, [w for w in found if w not in _english() and any(w in ws for ws in FOREIGN_WORDS.values())]


def foreign_share(text: str) -> float:
    """The share of a message that is not English: letters outside the Latin script, or else the
    words found only in ``FOREIGN_WORDS``. 0 for plain English."""
    non_latin = _non_latin_share(text)
    if non_latin >= 0.3:
        return non_latin
    found, foreign = _foreign_words(text)
    return len(foreign) / max(1, len(found))


def foreign_language(text: str) -> Optional[str]:
    """The language a message seems to be in when it is not English ("French", "Spanish", ...,
    "this language" for another script), or None."""
    if _non_latin_share(text) >= 0.3:
        return "this language"
    found, foreign = _foreign_words(text)
    lang, best = max(((lang, sum(w in ws for w in foreign)) for lang, ws in FOREIGN_WORDS.items()),
                     key=lambda kv: kv[1])
    if best >= 2 or (best >= 1 and len(found) <= 2):
        return lang
    return None


def not_english_reply(language: str) -> str:
    """What the built-in parser answers to a message in another language."""
    return (f"I can't read {language}: the built-in parser understands English only. Please write the "
            f"instruction in English (e.g. {EXAMPLES}), or configure an LLM to write in any language: set "
            "LOCALEDIT_LLM_MODEL plus LOCALEDIT_LLM_BASE_URL (a local server such as Ollama) or LOCALEDIT_LLM_API_KEY.")
