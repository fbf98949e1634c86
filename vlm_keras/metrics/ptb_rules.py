"""Rule table of the PTB lexer (CoreNLP 3.4.1 defaults) as Python regexes.

Each rule is one compiled pattern whose named group ``m`` is the token text and
whose remainder (if any) is JFlex trailing context: it must match, it counts
towards the longest-match comparison, but it is not consumed.  A JFlex rule
with top-level alternatives is split into consecutive patterns with the same
action, so that the longest alternative wins as it does in the JFlex DFA
(Python's ``re`` would otherwise stop at the first alternative that matches).

JFlex's ``%caseless`` folds the case of literal letters but not of character
classes (``[A]bout`` only matches a capital A); patterns below are written
with classes where case matters and pass through ``_caseless`` once.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, List, Optional, Tuple


def _class_body(predicate: Callable[[str], bool]) -> str:
    """Character-class body (ranges of ``\\uXXXX``) of the BMP chars passing ``predicate``."""
    parts, cp = [], 0
    while cp < 0x10000:
        if 0xD800 <= cp <= 0xDFFF or not predicate(chr(cp)):
            cp += 1
            continue
        start = cp
        while cp + 1 < 0xD800 or 0xDFFF < cp + 1 < 0x10000:
            if not predicate(chr(cp + 1)):
                break
            cp += 1
        parts.append("\\u%04x" % start if start == cp else "\\u%04x-\\u%04x" % (start, cp))
        cp += 1
    return "".join(parts)


def _caseless(pattern: str) -> str:
    """Make ASCII letters outside character classes match both cases (JFlex %caseless)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            width = {"u": 6, "x": 4}.get(pattern[i + 1], 2)
            out.append(pattern[i:i + width])
            i += width
        elif ch == "[":
            j = i + 1
            while pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            out.append(pattern[i:j + 1])
            i = j + 1
        elif ch.isascii() and ch.isalpha():
            out.append("[%s%s]" % (ch.upper(), ch.lower()))
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _top_level_alternatives(pattern: str) -> List[str]:
    """Split a pattern at the ``|`` signs that are outside groups and classes."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i += 1
            while pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _alt(*words: str) -> str:
    """Non-capturing alternation, longest alternative first."""
    return "(?:%s)" % "|".join(sorted(words, key=len, reverse=True))


# --- character classes (Java: isLetter / isDigit / isUpperCase over UTF-16 units)
# The jar's JFlex tables follow Unicode 6.x.  Sweeping every BMP code point
# through it (NOTES.md) showed: its letters are Python's minus the ranges below
# (encoded or re-categorised in Unicode 7.0-14.0) plus two Mongolian letters
# that are marks today; its digits lack two digit sets added in Unicode 7.0;
# its upper case is Lu minus Cherokee (Lo before Unicode 8.0), plus the
# Other_Uppercase symbols.
_LETTERS_NEWER_THAN_JAR = re.compile(
    "[\u037f\u0528-\u052f\u0560\u0588\u05ef\u0860-\u086a\u0870-\u0887\u0889-\u088e"
    "\u08a1\u08ad-\u08c9\u0978\u0980\u09fc\u0af9\u0c34\u0c5a\u0c5d\u0c80\u0cdd\u0d04"
    "\u0d54-\u0d56\u0d5f\u0e86\u0e89\u0e8c\u0e8e-\u0e93\u0e98\u0ea0\u0ea8\u0ea9\u0eac"
    "\u13f5\u13f8-\u13fd\u16f1-\u16f8\u170d\u171f\u1878\u191d\u191e\u19b0-\u19c0"
    "\u19c8\u19c9\u1b4c\u1c80-\u1c88\u1c90-\u1cba\u1cbd-\u1cbf\u1cf2\u1cf3\u1cfa"
    "\u2c2f\u2c5f\u312e\u312f\u31bb-\u31bf\u4db6-\u4dbf\u9fcd-\u9fff\ua698-\ua69d"
    "\ua78f\ua794-\ua79f\ua7ab-\ua7ca\ua7d0\ua7d1\ua7d3\ua7d5-\ua7d9\ua7f2-\ua7f7"
    "\ua8fd\ua8fe\ua9e0-\ua9e4\ua9e6-\ua9ef\ua9fa-\ua9fe\uaa7e\uaa7f\uab30-\uab5a"
    "\uab5c-\uab69\uab70-\uabbf]")
_DIGITS_NEWER_THAN_JAR = re.compile("[\u0de6-\u0def\ua9f0-\ua9f9]")
_CHEROKEE = re.compile("[\u13a0-\u13f4]")


def _is_jar_letter(ch: str) -> bool:
    """Java isLetter as of the jar's tables (Unicode 6.x)."""
    return (ch.isalpha() and not _LETTERS_NEWER_THAN_JAR.match(ch)) or ch in "\u1885\u1886"


def _is_jar_digit(ch: str) -> bool:
    """Java isDigit (category Nd) as of the jar's tables."""
    return unicodedata.category(ch) == "Nd" and not _DIGITS_NEWER_THAN_JAR.match(ch)


def _is_jar_upper(ch: str) -> bool:
    """Java isUpperCase as of the jar's tables (only used to spot a sentence start).

    Includes the Other_Uppercase symbols (Roman numerals, circled letters).
    """
    if ch.isupper() and not ch.isalpha():
        return True
    return unicodedata.category(ch) == "Lu" and _is_jar_letter(ch) and not _CHEROKEE.match(ch)


_PLAIN_LETTERS = _class_body(_is_jar_letter)
_DIGITS = _class_body(_is_jar_digit)
DIGIT = "[%s]" % _DIGITS
# Extra marks and letters the CoreNLP 3.4.1 LETTER macro adds to [:letter:].
_EXTRA_LETTERS = (
    "\\u00ad\\u0237-\\u024f\\u02c2-\\u02c5\\u02d2-\\u02df\\u02e5-\\u02ff\\u0300-\\u036f"
    "\\u0370-\\u037d\\u0384\\u0385\\u03cf\\u03f6\\u03fc-\\u03ff\\u0483-\\u0487\\u04cf"
    "\\u04f6-\\u04ff\\u0510-\\u0525\\u055a-\\u055f\\u0591-\\u05bd\\u05bf\\u05c1\\u05c2"
    "\\u05c4\\u05c5\\u05c7\\u0615-\\u061a\\u063b-\\u063f\\u064b-\\u065e\\u0670"
    "\\u06d6-\\u06ef\\u06fa-\\u06ff\\u070f\\u0711\\u0730-\\u074f\\u0750-\\u077f"
    "\\u07a6-\\u07b1\\u07ca-\\u07f5\\u07fa\\u0900-\\u0903\\u093c\\u093e-\\u094e"
    "\\u0951-\\u0955\\u0962-\\u0963\\u0981-\\u0983\\u09bc-\\u09c4\\u09c7\\u09c8"
    "\\u09cb-\\u09cd\\u09d7\\u09e2\\u09e3\\u0a01-\\u0a03\\u0a3c\\u0a3e-\\u0a4f"
    "\\u0a81-\\u0a83\\u0abc-\\u0acf\\u0b82\\u0bbe-\\u0bc2\\u0bc6-\\u0bc8\\u0bca-\\u0bcd"
    "\\u0c01-\\u0c03\\u0c3e-\\u0c56\\u0d3e-\\u0d44\\u0d46-\\u0d48\\u0e30-\\u0e3a"
    "\\u0e47-\\u0e4e\\u0eb1-\\u0ebc\\u0ec8-\\u0ecd")
_UPPER = "[%s]" % _class_body(_is_jar_upper)
PL = "[%s]" % _PLAIN_LETTERS                       # [:letter:]
PLD = "[%s%s]" % (_PLAIN_LETTERS, _DIGITS)                  # [:letter:]|[:digit:]
_SPLET = "&[aeiouAEIOU](?:acute|grave|uml);"       # &eacute; style entities
LETTER = "(?:[%s%s]|%s)" % (_PLAIN_LETTERS, _EXTRA_LETTERS, _SPLET)
LETTER_OR_DIGIT = "(?:[%s%s%s]|%s)" % (_PLAIN_LETTERS, _EXTRA_LETTERS, _DIGITS, _SPLET)

SPACE = "[ \\t\\u00a0\\u2000-\\u200a\\u3000]"
NL = "(?:\\r\\n|[\\r\\n\\u2028\\u2029\\u000b\\u000c\\u0085])"
SPACENL = "(?:%s|%s)" % (SPACE, NL)
APOS = "(?:['\\u0092\\u2019]|&apos;)"
APOSETC = "(?:%s|[`\\u0091\\u2018\\u201b])" % APOS
HYPHEN = "[-_\\u058a\\u2010\\u2011]"
NAME = "[A-Za-z][A-Za-z0-9_:.\\-]*"
SGML = ("<(?:[!?][A-Za-z\\-][^>\\r\\n]*|%s(?:[ ]+(?:%s[ ]*=[ ]*(?:'[^']*'|\"[^\"]*\")|%s))*"
        "[ ]*/?|/%s)[ ]*>" % (NAME, NAME, NAME, NAME))
SENTEND = "%s(?:%s|%s|%s)" % (SPACENL, SPACENL, _UPPER, SGML)
NUM = "(?:{D}*(?:[.:,\\u00ad\\u066b\\u066c]{D}+)+|{D}+)".replace("{D}", DIGIT)
WORD = "%s%s*(?:[.!?]%s%s*)*" % (LETTER, LETTER_OR_DIGIT, LETTER, LETTER_OR_DIGIT)
REDAUX = "%s(?:[msdMSD]|re|ve|ll)" % APOS
SREDAUX = "n%st" % APOSETC
SWORD = "[A-Za-z\\u00ad]*[A-MO-Za-mo-z]\\u00ad*"
ACRO_LONG = "(?:%s-U\\.S|U\\.S\\.-(?:U\\.K|U\\.S\\.S\\.R))" % _alt(
    "Canada", "Sino", "Korean", "EU", "Japan", "non")
ACRO = "(?:[A-Za-z](?:\\.[A-Za-z])*|%s)" % ACRO_LONG
ACRO2 = "(?:[A-Za-z](?:\\.[A-Za-z])+|%s)" % ACRO_LONG
ABBREV1 = "%s\\." % _alt(
    # months, days
    "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
    "Mon", "Tue", "Tues", "Wed", "Thu", "Thurs", "Fri",
    # states (a bracketed capital is case-sensitive)
    "Ala", "Ariz", "[A]z", "[A]rk", "Calif", "Colo", "Conn", "Ct", "Dak", "[D]el", "Fla",
    "Ga", "[I]ll", "Ind", "Kans?", "Ky", "[L]a", "[M]ass", "Md", "Mich", "Minn", "[M]iss",
    "Mo", "Mont", "Neb", "Nev", "Okla", "[O]re", "[P]a", "Penn", "Tenn", "[T]ex", "Va",
    "Vt", "[W]ash", "Wisc?", "Wyo",
    # companies, numbers, post-name titles, misc
    "Inc", "Cos?", "Corp", "Pp?t[ye]s?", "Ltd", "Plc", "Rt", "Bancorp", "Bhd", "Assn",
    "Univ", "Intl", "Sys", "tel", "est", "ext", "sq", "Jr", "Sr", "Bros", "(?:Ed|Ph)\\.D",
    "Blvd", "Rd", "Esq", "etc", "al", "seq", "Bldg")
ABBREV4 = _alt(
    "Mr", "Mrs", "Ms", "[M]iss", "Drs?", "Profs?", "Sens?", "Reps?", "Attys?", "Lt", "Col",
    "Gen", "Messrs", "Govs?", "Adm", "Rev", "Maj", "Sgt", "Cpl", "Pvt", "Capt", "Ste?",
    "Ave", "Pres", "Lieut", "Hon", "Brig", "Co?mdr", "Pfc", "Spc", "Supts?", "Det", "Mt",
    "Ft", "Adj", "Adv", "Asst", "Assoc", "Ens", "Insp", "Mlle", "Mme", "Msgr", "Sfc",
    "vs", "Alex", "Wm", "Jos", "Cie", "a\\.k\\.a", "cf", "TREAS", "Ph", ACRO,
    "Invt", "Elec", "Natl", "M[ft]g", "Dept")
_ACRONYM_NEXT = _alt(*(["[A]bout", "[A]ccording", "[A]dditionally", "[A]fter", "[A]n",
                         "[A]", "[A]s", "[A]t", "[B]ut", "[E]arlier", "[H]e", "[H]er",
                         "[H]ere", "[H]owever", "[I]f", "[I]n", "[I]t", "[L]ast", "[M]any",
                         "[M]ore", "[M]r\\.", "[M]s\\.", "[N]ow", "[O]nce", "[O]ne",
                         "[O]ther", "[O]ur", "[S]he", "[S]ince", "[S]o", "[S]ome",
                         "[S]uch", "[T]hat", "[T]he", "[T]heir", "[T]hen", "[T]here",
                         "[T]hese", "[T]hey", "[T]his", "[W]e", "[W]hen", "[W]hile",
                         "[W]hat", "[Y]et", "[Y]ou", SGML]))
_FILENAME_EXT = _alt(*(
    "bat bmp c class cgi cpp dll doc docx exe gif gz h htm html jar java jpeg jpg mov "
    "mp3 pdf php pl png ppt ps py sql tar txt wav x xml zip").split())
HTHING = "[A-Za-z0-9][A-Za-z0-9.,\\u00ad]*(?:-(?:%s\\.|[A-Za-z0-9\\u00ad]+))+" % ACRO2
THING = "(?:[dDoOlL]%s%s)?%s+(?:%s(?:[dDoOlL]%s%s)?%s+)*" % (
    APOSETC, PLD, PLD, HYPHEN, APOSETC, PLD, PLD)
THINGA = "[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+"
_URL_END = "[^ \\t\\n\\f\\r\"<>|.!?(){},-]"
_EMAIL_CHAR = "[^ \\t\\n\\f\\r\"<>|()\\u00a0{}]"
_EMAIL_PART = "[^ \\t\\n\\f\\r\"<>|(){}.\\u00a0]"
_URL_PATH = "(?:/[^ \\t\\n\\f\\r\"<>|()]+%s)?" % _URL_END
_QUOTE_CHARS = "[`\\u2018\\u2019\\u201a\\u201b\\u201c\\u201d\\u0091\\u0092\\u0093\\u0094" \
               "\\u201e\\u201f\\u2039\\u203a\\u00ab\\u00bb]"
_SMILE_EYE = "[\\-\\^x=~<>']"
PHONE_PARTS = (
    "(?:\\([0-9]{2,3}\\)[ \\u00a0]?|(?:\\+\\+?)?(?:[0-9]{2,4}[\\- \\u00a0])?[0-9]{2,4}"
    "[\\- \\u00a0])[0-9]{3,4}[\\- \\u00a0]?[0-9]{3,5}",
    "(?:(?:\\+\\+?)?[0-9]{2,4}\\.)?[0-9]{2,4}\\.[0-9]{3,4}\\.[0-9]{3,5}")
MISCSYMBOL = (
    "[+%&~\\^|\\\\\\u00a6\\u00a7\\u00a8\\u00a9\\u00ac\\u00ae\\u00af\\u00b0-\\u00ba\\u00d7"
    "\\u00f7\\u0387\\u05be\\u05c0\\u05c3\\u05c6\\u05f3\\u05f4\\u0600-\\u0603\\u0606-\\u060a"
    "\\u060c\\u0614\\u061b\\u061e\\u066a\\u066d\\u0703-\\u070d\\u07f6-\\u07f8\\u0964\\u0965"
    "\\u0e4f\\u1fbd\\u2016\\u2017\\u2020-\\u2023\\u2030-\\u2038\\u203b\\u203e-\\u2042\\u2044"
    "\\u207a-\\u207f\\u208a-\\u208e\\u2100-\\u214f\\u2190-\\u21ff\\u2200-\\u2bff\\u3012"
    "\\u30fb\\uff01-\\uff0f\\uff1a-\\uff20\\uff3b-\\uff40\\uff5b-\\uff65]")

# (action name, token pattern, trailing-context pattern or None), in JFlex order.
_RULE_SPECS: Tuple[Tuple[str, str, Optional[str]], ...] = (
    ("plain", "c[+][+]", None),
    ("plain", "(?:c|f)#", None),
    ("cut3", "cannot", None),
    ("cut3", "'twas", None),
    ("cut2", "'tis", None),
    ("cut2", _alt("gonna", "gotta", "lemme", "gimme", "wanna"), None),
    ("spaces_to_nbsp", SGML, None),
    ("dash", "&(?:MD|mdash|ndash);|[\\u0096\\u0097\\u2013\\u2014\\u2015]", None),
    ("amp", "&amp;", None),
    ("plain", "&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);", None),
    ("soft", WORD, REDAUX),
    ("soft", SWORD, SREDAUX),
    ("soft", WORD, None),
    # APOWORD, one pattern per alternative
    ("plain", "%sn%s?" % (APOS, APOS), None),
    ("plain", "[lLdDjJ]%s" % APOS, None),
    ("plain", "(?:Dunkin|somethin|ol)%s" % APOS, None),
    ("plain", "%s(?:em|till?|cause|[2-9]0s)" % APOS, None),
    ("plain", "[A-HJ-XZn]%s%s{2}%s*" % (APOSETC, PL, PL), None),
    ("plain", "%s+[aeiouyAEIOUY]%s[aeiouA-Z]%s*" % (PL, APOSETC, PL), None),
    ("plain", "cont'd\\.?", None),
    ("plain", _alt("'twas", "nor'easter", "c'mon", "e'er", "s'mores", "ev'ry", "li'l",
                   "nat'l"), None),
    ("plain", "O%so" % APOSETC, None),
    ("plain", "y%s" % APOS, PL),
    ("plain", "https?://[^ \\t\\n\\f\\r\"<>|(){}]+%s" % _URL_END, None),
    ("url", "www\\.(?:[^ \\t\\n\\f\\r\"<>|.!?(){},]+\\.)+[a-zA-Z]{2,4}%s" % _URL_PATH, None),
    ("url", "(?:[^ \\t\\n\\f\\r\"`'<>|.!?(){},-_$]+\\.)+(?:com|net|org|edu)%s" % _URL_PATH,
     None),
    ("plain", "(?:&lt;|<)?[a-zA-Z0-9]%s*@(?:%s+\\.)*%s+(?:&gt;|>)?" % (
        _EMAIL_CHAR, _EMAIL_PART, _EMAIL_PART), None),
    ("plain", "@[a-zA-Z_][a-zA-Z_0-9]*|#%s+" % LETTER, None),
    ("quote_right", REDAUX, "[^A-Za-z]"),
    ("quote_right", SREDAUX, "[^A-Za-z]"),
    ("plain", "{D}{1,2}[\\-/]{D}{1,2}[\\-/]{D}{2,4}".replace("{D}", DIGIT), None),  # DATE
    ("soft", "[\\-+]?" + NUM, None),
    ("plain", "[\\u207a\\u207b\\u208a\\u208b]?(?:[\\u2070\\u00b9\\u00b2\\u00b3"
              "\\u2074-\\u2079]+|[\\u2080-\\u2089]+)", None),
    ("spaces_to_nbsp", "(?:{D}{1,4}[- \\u00a0])?{D}{1,4}(?:\\\\?/|\\u2044){D}{1,4}".replace(
        "{D}", DIGIT), None),  # FRAC
    ("fraction", "[\\u00bc\\u00bd\\u00be\\u2153-\\u215e]", None),
    ("amp", "-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\\.D\\.s|pro-|anti-|S(?:&|&amp;)P-500"
            "|S(?:&|&amp;)Ls|Cap%sn|c%sest" % (APOS, APOS), None),
    ("plain", "[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}",
     None),  # THING3
    ("plain", "[A-Z]*\\$|#", None),
    ("currency", "[\\u00a2\\u00a3\\u00a4\\u00a5\\u0080\\u20a0\\u20ac\\u060b\\u0e3f\\u20a4"
                 "\\uffe0\\uffe1\\uffe5\\uffe6]", None),
    ("acronym", ACRO + "\\.", "%s+%s%s" % (SPACENL, _ACRONYM_NEXT, SPACENL)),
    ("plain", "(?:ca|figs?|prop|nos?|art|bldg|pp|op)\\.", "%s?%s" % (SPACENL, DIGIT)),
    ("plain", "(?:pt[eyEY]|co)\\.", "%s(?:ltd|lim)" % SPACE),
    ("cut1", ABBREV1, SENTEND),
    ("plain", ABBREV1, "[\\s\\S][\\s\\S]"),
    ("cut1", ABBREV1, None),
    ("plain", ABBREV4 + "\\.", None),
    ("plain", ABBREV4, SPACE),
    ("plain", ACRO, SPACENL),
    ("plain", "%s[0-9][0-9]" % APOS, SPACENL),
    ("plain", "%s+(?:\\.%s+)*\\.%s" % (LETTER_OR_DIGIT, LETTER_OR_DIGIT, _FILENAME_EXT),
     "(?:%s|[.?!,])" % SPACENL),
    ("soft", WORD + "\\.", "[,;:\\u3001]"),
    ("phone", "|".join(PHONE_PARTS), None),
    ("quote_left", "\"|&quot;", "[A-Za-z0-9$]"),
    ("quote_right", "\"|&quot;", None),
    ("skip", "\\x7f", None),
    ("less", "<|&lt;", None),
    ("greater", ">|&gt;", None),
    ("parens", "[<>]?[:;=][\\-o*']?[()DPdpO\\\\{@|\\[\\]]", "[^A-Za-z0-9]"),
    ("parens", "[\\^x=~<>]\\.\\[\\^x=~<>\\]", None),
    ("parens", "%s_%s" % (_SMILE_EYE, _SMILE_EYE), None),
    ("parens", "\\(%s[_.]?%s\\)" % (_SMILE_EYE, _SMILE_EYE), None),
    ("parens", "\\([\\^x=~<>']-[\\^x=~<>'`]\\)", None),
    ("lcb", "\\{", None),
    ("rcb", "\\}", None),
    ("lsb", "\\[", None),
    ("rsb", "\\]", None),
    ("lrb", "\\(", None),
    ("rrb", "\\)", None),
    ("hyphens", "-+", None),
    ("ellipsis", "\\.{3,5}|(?:\\.[ \\u00a0]){2,4}\\.|[\\u0085\\u2026]", None),
    ("plain", "@+|#+|_+", None),
    ("plain", "\\*+|(?:\\\\\\*){1,3}", None),
    ("plain", "[,;:\\u3001]", None),
    ("plain", "[?!]+", None),
    ("plain", "[.\\u00a1\\u00bf\\u037e\\u0589\\u061f\\u06d4\\u0700-\\u0702\\u07fa\\u3002]", None),
    ("plain", "=", None),
    ("plain", "/", None),
    ("soft", HTHING + "\\.", "[,;:\\u3001]"),
    ("soft", HTHING, None),
    ("plain", THING + "\\.", "[,;:\\u3001]"),
    ("plain", THING, None),
    ("amp", THINGA + "\\.", "[,;:\\u3001]"),
    ("amp", THINGA, None),
    ("quote_left", "'", "[A-Za-z][^ \\t\\n\\r\\u00a0]"),
    ("quote_right", REDAUX, None),
    ("quote_right", SREDAUX, None),
    ("quote_right", "%s|''|%s{1,2}" % (APOS, _QUOTE_CHARS), None),
    ("plain", "<<|>>", None),
    ("plain", MISCSYMBOL, None),
    ("skip", "\\x00|%s+|[\\u200b\\u200e\\u200f\\ufeff]" % SPACE, None),
    ("newline", NL, None),
    ("skip", "&nbsp;", None),
    ("skip", "[^\\n]", None),  # untokenizable: CoreNLP deletes it (and logs once)
)


# Where Python's backtracking may return a shorter parse than the JFlex DFA
# (nested repetitions in URLs and phone numbers), the longest match is searched
# explicitly; these give the furthest position such a match could reach.
_URL_STOP = re.compile("[ \\t\\n\\f\\r\"<>|()]")


def _url_limit(units: str, pos: int) -> int:
    stop = _URL_STOP.search(units, pos)
    return len(units) if stop is None else stop.start()


def _phone_limit(units: str, pos: int) -> int:
    return min(len(units), pos + 32)  # the PHONE macro spans at most 28 units


_LONGEST_LIMITS = {"url": _url_limit, "phone": _phone_limit}


def _compile_rules() -> Tuple[tuple, Tuple[str, ...], tuple]:
    """One compiled pattern per top-level alternative of each rule, in rule order.

    Returns:
        (patterns, actions, limits): parallel sequences; ``actions[i]`` names
        what to do with group ``m`` of a match of ``patterns[i]`` (see
        ptb_tokenizer); ``limits[i]`` is None or a function (text, pos) ->
        furthest end worth trying for the longest match.
    """
    patterns, actions, limits = [], [], []
    for action_name, token, trail in _RULE_SPECS:
        for alternative in _top_level_alternatives(token):
            patterns.append(re.compile(
                "(?P<m>%s)%s" % (_caseless(alternative), _caseless(trail or ""))))
            actions.append(action_name)
            limits.append(_LONGEST_LIMITS.get(action_name))
    return tuple(patterns), tuple(actions), tuple(limits)


RULES, RULE_ACTIONS, LONGEST_LIMIT = _compile_rules()


def match_rule(index: int, units: str, pos: int) -> "Optional[re.Match[str]]":
    """Longest match of rule ``index`` at ``pos`` (JFlex semantics), or None."""
    pattern = RULES[index]
    match = pattern.match(units, pos)
    limit = LONGEST_LIMIT[index]
    if match is None or limit is None:
        return match
    for end in range(limit(units, pos), match.end(), -1):
        longer = pattern.fullmatch(units, pos, end)
        if longer is not None:
            return longer
    return match

# A run of ASCII letters followed by a space, a line feed or the end of text.
FAST_WORD = re.compile("([A-Za-z]+)(?:[ \\n]|$)")
# A run of the lexer's SPACE characters (skipped as one unit).
SPACE_RUN = re.compile(SPACE + "+")
