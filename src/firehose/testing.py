"""Deterministic synthetic firehose captures, for tests, demos and benchmarks.

    >>> from firehose.testing import generate, write_capture
    >>> lines = list(generate(1000, seed=7))           # bytes, each ending in b"\\n"
    >>> write_capture("capture.ndjson.zst", 300_000)    # plain, .gz or .zst by suffix

The default dialect is an X API v1.1 *stream* capture (2022): ~3-4 KB statuses with full user
objects, retweets, quotes, replies, extended tweets, media, geo, and interleaved stream messages
(``delete``, ``limit``, ``scrub_geo``, ``status_withheld``, ``user_withheld``, ``warning``).
Bytes are written the way the v1.1 API wrote them: every non-ASCII character as a lowercase
``\\uXXXX`` escape (emoji as surrogate pairs), ``/`` as ``\\/``, ``<`` ``>`` as ``\\u003c``
``\\u003e``, HTML entities (``&amp;``) left in the text, entity indices in code points.

``dialect="v2"`` writes v2 filtered-stream envelopes (``data`` / ``includes`` /
``matching_rules``, raw UTF-8 with astral characters as UPPERCASE surrogate escapes),
``dialect="activity"`` Gnip PowerTrack Activity Streams, ``dialect="mixed"`` (or
:func:`generate_mixed`) all three interleaved.

Everything derives from ``random.Random(seed)`` and ``start``: the same arguments give the same
bytes, on any machine and Python >= 3.10 (only ``random()`` and ``getrandbits()`` are used,
whose sequences Python keeps stable). :func:`generate_labeled` yields ``(label, line)`` pairs
saying what a decoder must make of each line.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import json
import os
import random
import re
import sys
import time
from array import array
from binascii import b2a_base64 as _b2a
from bisect import bisect_left, bisect_right
from collections import deque
from typing import Iterator

__all__ = ["generate", "generate_bytes", "generate_labeled", "generate_mixed", "write_capture",
           "DIALECTS", "DEFAULT_START_MS", "TWITTER_EPOCH_MS", "snowflake_ms"]

#: ``dialect`` values accepted by :func:`generate`
DIALECTS = ("v1.1", "v2", "activity", "mixed")

#: Twitter's snowflake epoch (2010-11-04T01:42:54.657Z)
TWITTER_EPOCH_MS = 1288834974657
#: default ``start``: 2022-03-01T00:00:00Z
DEFAULT_START_MS = 1646092800000

# Labels yielded by generate_labeled():
#   "tweet"               a status the decoder must emit as a tweet row
#   "duplicate"           a byte-for-byte re-send of an earlier "tweet" line (dedupe drops it)
#   "blank"               a keep-alive line (b"\r\n")
#   "compliance:<kind>"   one compliance row of that kind (kinds of schema.COMPLIANCE_KINDS)
#   "reject:<reason>"     a broken line and the reason the decoder must give (REJECT_REASONS)
MALFORMED_KINDS = ("truncated", "invalid_json", "invalid_utf8", "invalid_escape",
                   "lone_surrogate", "missing_id")


class _Rand(random.Random):
    """random.Random with small, fast helpers built only on ``random()`` (whose sequence Python
    keeps stable across versions, unlike ``choice``/``randint``/``choices``)."""

    def pick(self, seq):
        return seq[int(self.random() * len(seq))]

    def between(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def many(self, seq, k: int) -> list:
        rnd = self.random
        n = len(seq)
        return [seq[int(rnd() * n)] for _ in range(k)]

    def wpick(self, table):
        """table = (items, cumulative weights) from _wtable()."""
        items, cum = table
        return items[bisect_right(cum, self.random() * cum[-1])]

    def code(self, k: int) -> str:
        """k random alphanumeric characters (t.co codes, media keys); k >= 3."""
        return _b2a(self.getrandbits(6 * k + 6).to_bytes(k, "little"), newline=False)[:k].translate(_B64_FIX).decode()


def _wtable(pairs):
    items, cum, tot = [], [], 0
    for item, w in pairs:
        tot += w
        items.append(item)
        cum.append(tot)
    return items, cum


def snowflake_ms(tweet_id: int) -> int:
    """The creation time (epoch ms) a snowflake id carries."""
    return (tweet_id >> 22) + TWITTER_EPOCH_MS


# JSON dumps in the three producers' byte styles ---------------------------------------------

_dumps_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False).encode
_dumps_utf8 = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def _v11_escape(s: str) -> str:
    # only strings hold / < >, so a plain replace is safe on the serialised text
    return s.replace("/", "\\/").replace("<", "\\u003c").replace(">", "\\u003e")


_enc_ascii = json.encoder.encode_basestring_ascii


def _J(s: str) -> str:
    """One string as a v1.1 JSON string literal."""
    return _enc_ascii(s).replace("/", "\\/").replace("<", "\\u003c").replace(">", "\\u003e")


def _upper_pair(m) -> str:
    c = ord(m.group()) - 0x10000
    return "\\u%04X\\u%04X" % (0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF))


def _v2_text(obj) -> str:
    s = _dumps_utf8(obj)
    return _ASTRAL.sub(_upper_pair, s)


# --------------------------------------------------------------------------------------------
# Static pools: words, names, places, apps.  Module data, built once, never random.
# --------------------------------------------------------------------------------------------

_WORDS = {
    "en": ("just love today the best day ever thank you so much this is amazing can't wait for "
           "new video out now check it happy birthday my friend what a game last night we need "
           "to talk about people really good morning everyone please help why does everything "
           "feel like weekend vibes lol omg tbh honestly market going up down news breaking "
           "world music album stream live show tonight coffee work school team win won lost "
           "season fans again still never always here there with and but or if when because "
           "gonna think know right time year week home city love it's don't I'm that's finally "
           "literally nobody asked tired excited proud of you all them us our your their").split(),
    "es": ("qué también año mañana corazón fútbol más está canción días vida gracias amigos "
           "siempre hoy mejor nunca así después todavía país niños jugar partido música película "
           "increíble dónde cómo porque mucho gente familia trabajo noche semana feliz amor equipo "
           "ganar señor pequeño español el la los las de en y que un una por con para mi tu "
           "jajaja él sí aquí allá").split(),
    "pt": ("hoje você não está obrigado obrigada coração amanhã também até saudade então muito "
           "mãe irmão futebol jogo vitória ação informação lá já é só vida amigos gente tudo bem "
           "demais Brasil o a os as de em e que um uma por com para meu minha kkkkk né").split(),
    "fr": ("aujourd'hui très merci beaucoup été où déjà première même être français génial ça à "
           "voilà c'est journée soirée équipe match énorme fête musique cœur noël vraiment "
           "toujours avec pour mais nous vous ils le la les de du des et un une je tu ").split(),
    "de": ("heute schön Grüße für über Mädchen Straße wirklich danke Spiel Mannschaft Wochenende "
           "nächste Woche Frühling müssen können gemütlich Bundesliga Tor toll gut sehr mit und "
           "ich wir Zeit Leben Nachrichten der die das ein eine nicht auch noch schon").split(),
    "it": ("oggi grazie perché città è più così già bella amore sempre ciao tutti partita squadra "
           "però giù caffè domani buongiorno il la di che e un una non per con").split(),
    "tr": ("bugün çok güzel teşekkürler Türkiye İstanbul şimdi değil için ağabey öğrenci güneş maç "
           "gol şampiyon hayırlı günaydın iyi akşamlar kardeş sevgi hayat mutlu ışık yıl değer ne "
           "bu bir ve ama gibi daha").split(),
    "in": ("aku kamu yang dan tidak ini itu sama banget terima kasih selamat pagi semua hari mau "
           "bisa sudah belum lagi kita orang juga saja ada apa gimana wkwk").split(),
    "ru": ("сегодня очень спасибо привет как дела новости Россия Москва время хорошо люди жизнь "
           "друзья любовь работа мир всё это что когда нет да можно где день вечер погода музыка "
           "и в не на я с что").split(),
    "ar": ("الله اللهم في من على يا ما هذا اليوم الحمد لله صباح الخير مساء النور رمضان كريم شكرا "
           "جميل حب قلب الناس الحياة كل سبحان وبحمده إن لا أنت الهلال النصر مبروك").split(),
    "hi": ("आज बहुत अच्छा धन्यवाद भारत देश लोग जीवन प्यार दोस्त समय काम खबर सरकार जी है हैं का की "
           "के में से और नहीं क्या जय हिंद शुभ प्रभात").split(),
    "ja": ("今日 は 本当に ありがとう 楽しかった 明日 また ライブ 最高 です ね よ 好き かわいい 推し 配信 "
           "見て ください 私 の 友達 と ご飯 行った 仕事 終わった 疲れた おやすみ おはよう 新曲 発売 決定 "
           "マジで やばい 天気 雨 桜 ゲーム アニメ 漫画 楽しみ 嬉しい が を に、 。 ！").split(),
    "ko": ("오늘 정말 너무 좋아요 사랑해 감사합니다 진짜 생일 축하해 노래 최고 우리 같이 보고 싶어 방송 "
           "시작 응원 해요 행복 하루 되세요 멤버 컴백 기대 중 영상 대박 고마워 ㅋㅋㅋ ㅠㅠ").split(),
    "zh": ("今天 我们 真的 非常 喜欢 这个 世界 朋友 一起 生日 快乐 谢谢 新闻 时间 工作 学习 音乐 电影 "
           "希望 大家 好 的 了 是 在 看 说 没有 知道 ， 。").split(),
    "th": ("วันนี้ ขอบคุณ มาก ครับ ค่ะ สวัสดี รัก คิดถึง น่ารัก ที่สุด เพลง ใหม่ ดู กัน นะ เลย จริง "
           "สนุก อร่อย ไป เที่ยว ทำงาน เหนื่อย ฝันดี ยินดี ด้วย").split(),
}
_NOSPACE = frozenset(("ja", "zh", "th"))
_PUNCT = {"ja": "", "zh": "", "th": "", "ar": "،.!؟", "hi": "।,!?"}
_CORPORA: dict = {}


def _corpus(lang: str):
    """(text, word start offsets): a long deterministic word stream per language; tweet texts
    are slices of it (two random numbers and a bisect per chunk instead of one per word)."""
    c = _CORPORA.get(lang)
    if c is None:
        r = random.Random("firehose.corpus." + lang)
        words = _WORDS[lang]
        punct = _PUNCT.get(lang, ",.!?")
        sep = "" if lang in _NOSPACE else " "
        parts, bounds, pos = [], [], 0
        nw = len(words)
        for _ in range(12000):
            w = words[int(r.random() * nw)]
            if punct and r.random() < 0.08:
                w += punct[int(r.random() * len(punct))]
            bounds.append(pos)
            parts.append(w)
            pos += len(w) + len(sep)
        bounds.append(pos)
        c = _CORPORA[lang] = (sep.join(parts) + sep, array("i", bounds))
    return c
_HALF = frozenset(("ja", "zh", "ko"))          # weighted as 2 per character: shorter texts

_HASHTAGS = {
    "en": ["NowPlaying", "BTS", "WorldCup", "Bitcoin", "NFT", "COVID19", "Ukraine", "MondayMotivation",
           "gaming", "art", "NBA", "Oscars", "100DaysOfCode", "Python"],
    "es": ["España", "FelizLunes", "Fútbol", "México", "LaLiga", "Argentina", "Noticias"],
    "pt": ["Brasil", "BBB22", "Flamengo", "Futebol", "SãoPaulo"],
    "fr": ["France", "Présidentielle2022", "Paris", "Ligue1", "Québec"],
    "de": ["Bundesliga", "Deutschland", "Fußball", "München", "Berlin"],
    "it": ["SerieA", "Sanremo2022", "Italia", "Roma"],
    "tr": ["Türkiye", "Galatasaray", "Fenerbahçe", "İstanbul", "sondakika"],
    "in": ["Indonesia", "Jakarta", "OOTD"],
    "ru": ["Россия", "новости", "Москва", "спорт"],
    "ar": ["السعودية", "رمضان", "الهلال", "عاجل", "الكويت"],
    "hi": ["भारत", "मोदी", "क्रिकेट", "IPL2022"],
    "ja": ["拡散希望", "イラスト", "相互フォロー", "ポケモン", "お絵描き", "新曲"],
    "ko": ["방탄소년단", "트와이스", "BTS", "생일축하해", "NCT"],
    "zh": ["新闻", "中国", "音乐", "电影"],
    "th": ["ไบร์ทวิน", "ประเทศไทย", "กรุงเทพ", "BLACKPINK"],
}
_CASHTAGS = ["AAPL", "TSLA", "BTC", "ETH", "AMZN", "GME", "NVDA", "MSFT", "SPY", "DOGE", "GOOGL",
             "META", "AMC", "SOL"]
_EMOJI = ["\U0001F602", "\u2764\ufe0f", "\U0001F923", "\U0001F60D", "\U0001F64F", "\U0001F525",
          "\U0001F62D", "\u2728", "\U0001F44D", "\U0001F97A", "\U0001F495", "\U0001F60A",
          "\U0001F389", "\U0001F440", "\U0001F4AF", "\U0001F1FA\U0001F1F8", "\U0001F1EF\U0001F1F5",
          "\U0001F1E7\U0001F1F7", "\U0001F469\u200d\U0001F4BB", "\U0001F44D\U0001F3FD", "\U0001F605",
          "\U0001F914", "\U0001F49C", "\U0001F64C", "\U0001F60E", "\U0001F338", "\u26bd", "\U0001F3C6",
          "\u2615", "\u2705", "\U0001F680", "\U0001F4C8", "\U0001F3B6", "\U0001F31F"]
_DOMAINS = [
    ("https://www.youtube.com/watch?v=", 11), ("https://www.instagram.com/p/", 11),
    ("https://www.nytimes.com/2022/03/01/world/europe/", 20), ("https://open.spotify.com/track/", 22),
    ("https://www.bbc.co.uk/news/world-", 8), ("https://bit.ly/", 7), ("https://nhk.or.jp/news/html/", 14),
    ("https://www.theguardian.com/world/2022/mar/01/", 24), ("https://elpais.com/internacional/", 18),
    ("https://g1.globo.com/mundo/noticia/2022/03/01/", 20), ("https://www.twitch.tv/", 9),
    ("https://github.com/", 14), ("https://medium.com/@", 18), ("https://www.reuters.com/markets/", 16),
]
_APPS = [
    ("Twitter for iPhone", "http://twitter.com/download/iphone", 38),
    ("Twitter for Android", "http://twitter.com/download/android", 34),
    ("Twitter Web App", "https://mobile.twitter.com", 16),
    ("Twitter for iPad", "http://twitter.com/#!/download/ipad", 3),
    ("TweetDeck", "https://about.twitter.com/products/tweetdeck", 3),
    ("IFTTT", "https://ifttt.com", 1), ("Buffer", "https://buffer.com", 1),
    ("Hootsuite Inc.", "https://www.hootsuite.com", 1), ("dlvr.it", "https://dlvrit.com/", 1),
    ("Instagram", "http://instagram.com", 1),
]
_APPS = [(name, url, w, _J('<a href="%s" rel="nofollow">%s</a>' % (url, name))) for name, url, w in _APPS]
_APP_TABLE = _wtable((a, a[2]) for a in _APPS)
_MEDIA_TABLE = _wtable((("photo", 76), ("video", 18), ("animated_gif", 6)))
_NPHOTO_TABLE = _wtable(((1, 70), (2, 15), (3, 7), (4, 8)))
_DIMS = ((1200, 675), (1080, 1350), (2048, 1536), (720, 1280), (1280, 720))
_NAMES = {
    "en": (["James", "Emma", "Olivia", "Liam", "Noah", "Ava", "Sophia", "Mason", "Chris", "Jess",
            "Mike", "Sarah", "David", "Ashley", "Tyler", "Megan"],
           ["Smith", "Johnson", "Brown", "Miller", "Davis", "Wilson", "Taylor", "Clark", "O'Neil"]),
    "es": (["José", "María", "Lucía", "Andrés", "Sofía", "Martín", "Camila", "Jesús", "Ángel", "Inés"],
           ["García", "Martínez", "López", "Hernández", "González", "Pérez", "Núñez", "Peña"]),
    "pt": (["João", "Ana", "Gabriel", "Júlia", "Lucas", "Beatriz", "Luís"],
           ["Silva", "Santos", "Oliveira", "Souza", "Conceição", "Araújo"]),
    "fr": (["Léa", "Chloé", "Théo", "Hugo", "Zoé", "Jérôme", "Amélie", "François"],
           ["Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Girard"]),
    "de": (["Lukas", "Jürgen", "Sören", "Jonas", "Lena", "Jörg", "Anna"],
           ["Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Schäfer"]),
    "it": (["Giulia", "Marco", "Francesca", "Luca", "Niccolò"], ["Rossi", "Russo", "Ferrari", "Bianchi"]),
    "tr": (["Mehmet", "Ayşe", "Emre", "Zeynep", "Çağrı", "Gökhan", "Şule", "Özge"],
           ["Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Öztürk"]),
    "in": (["Putri", "Budi", "Dewi", "Agus", "Sari", "Rizky"], ["Pratama", "Saputra", "Wijaya", "Lestari"]),
    "ru": (["Александр", "Анна", "Дмитрий", "Мария", "Сергей", "Ольга", "Иван", "Екатерина"],
           ["Иванов", "Смирнов", "Кузнецов", "Попов", "Соколов"]),
    "ar": (["محمد", "أحمد", "فاطمة", "نورة", "عبدالله", "سارة", "خالد", "ريم"],
           ["العتيبي", "القحطاني", "الشمري", "الحربي", "الدوسري"]),
    "hi": (["राहुल", "प्रिया", "अमित", "पूजा", "विकास", "नेहा"], ["शर्मा", "वर्मा", "सिंह", "गुप्ता", "कुमार"]),
    "ja": (["さくら", "ゆうき", "はると", "あおい", "みさき", "陽菜", "蓮", "結衣", "翔太", "美咲"],
           ["田中", "佐藤", "鈴木", "高橋", "渡辺", "伊藤", "山本", "中村"]),
    "ko": (["민준", "서연", "지우", "하은", "도윤", "예린", "지민", "태형"], ["김", "이", "박", "최", "정", "강"]),
    "zh": (["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳"], ["王", "李", "张", "刘", "陈", "杨"]),
    "th": (["สมชาย", "สมหญิง", "ณัฐ", "พิมพ์", "อนันต์"], ["ใจดี", "สุขใจ", "ทองดี"]),
}
_HANDLES = ("sakura yuki haru minjun jimin maria jose alex ahmed nora sasha priya lea jonas joao "
            "mehmet somchai putri luca emma chris mike sarah dev anon news daily crypto fan art "
            "gamer itsme real the official kpop army").split()
_LOCATIONS = {
    "en": ["Los Angeles, CA", "London, England", "New York, USA", "Texas", "she/her", "Toronto, Ontario",
           "Lagos, Nigeria", "Manila", "\U0001F30D", "Sydney, New South Wales"],
    "es": ["Madrid, España", "Ciudad de México", "Buenos Aires, Argentina", "Bogotá, D.C., Colombia"],
    "pt": ["São Paulo, Brasil", "Rio de Janeiro, Brasil", "Lisboa, Portugal"],
    "fr": ["Paris, France", "Montréal, Québec", "Lyon"], "de": ["Berlin, Deutschland", "München", "Köln"],
    "it": ["Milano, Lombardia", "Roma"], "tr": ["İstanbul, Türkiye", "Ankara"], "in": ["Jakarta Capital Region"],
    "ru": ["Москва, Россия", "Санкт-Петербург"], "ar": ["الرياض, المملكة العربية السعودية", "الكويت", "القاهرة"],
    "hi": ["नई दिल्ली, भारत", "Mumbai, India"], "ja": ["東京", "大阪府", "日本"], "ko": ["서울", "대한민국"],
    "zh": ["北京", "上海"], "th": ["กรุงเทพมหานคร", "Bangkok, Thailand"],
}
# (lang, weight): roughly the 2022 firehose mix; "und"/"zxx" are emoji-only and media-only tweets
_LANGS = [("en", 30), ("ja", 15), ("es", 9), ("pt", 6), ("ar", 6), ("ko", 4), ("in", 3),
          ("tr", 3), ("th", 3), ("fr", 3), ("ru", 2), ("hi", 2), ("de", 2), ("zh", 2),
          ("it", 1), ("und", 4), ("zxx", 1)]
_LANG_TABLE = _wtable(_LANGS)
# lang -> (text language, hashtag pool, CJK-weighted, uses &amp;, uses $cashtags, uses &lt;3)
_LANG_INFO = {lg: (lg if lg in _WORDS else "en", _HASHTAGS.get(lg, _HASHTAGS["en"]), lg in _HALF,
                   lg in ("en", "es", "fr", "pt", "de"), lg in ("en", "ja", "es"), lg in ("en", "es", "fr"))
              for lg, _w in _LANGS}
_COLOURS = ["1DA1F2", "F5F8FA", "C0DEED", "000000", "FFFFFF", "333333", "DDEEF6", "0084B4",
            "ABB8C2", "E81C4F", "FAB81E", "19CF86", "9266CC", "981CEB", "3B94D9", "4A913C"]
_DEFAULT_COLOURS = ("F5F8FA", "C0DEED", "1DA1F2", "C0DEED", "DDEEF6", "333333")
_PALETTES = [tuple(_Rand("firehose.palette.%d" % _i).many(_COLOURS, 6)) for _i in range(64)]
_B64_FIX = bytes.maketrans(b"+/", b"Qz")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

# (name, full_name, country_code, country, place_type, lon_min, lat_min, lon_max, lat_max, langs)
_PLACE_DATA = [
    ("Manhattan", "Manhattan, NY", "US", "United States", "city", -74.026675, 40.683935, -73.910408, 40.877483, "en es"),
    ("Los Angeles", "Los Angeles, CA", "US", "United States", "city", -118.668404, 33.704538, -118.155409, 34.337041, "en es"),
    ("Chicago", "Chicago, IL", "US", "United States", "city", -87.940033, 41.644102, -87.523993, 42.023067, "en"),
    ("London", "London, England", "GB", "United Kingdom", "city", -0.510375, 51.28676, 0.334015, 51.691874, "en"),
    ("Toronto", "Toronto, Ontario", "CA", "Canada", "city", -79.639319, 43.403221, -78.90582, 43.855401, "en fr"),
    ("Sydney", "Sydney, New South Wales", "AU", "Australia", "city", 150.520929, -34.118347, 151.343021, -33.578141, "en"),
    ("Lagos", "Lagos, Nigeria", "NG", "Nigeria", "city", 3.098273, 6.393682, 3.696728, 6.702323, "en"),
    ("Madrid", "Madrid, Comunidad de Madrid", "ES", "España", "city", -3.888954, 40.312064, -3.517916, 40.643518, "es"),
    ("Ciudad de México", "Ciudad de México, México", "MX", "México", "admin", -99.364924, 19.048237, -98.940303, 19.592757, "es"),
    ("Buenos Aires", "Buenos Aires, Argentina", "AR", "Argentina", "city", -58.531449, -34.705637, -58.335145, -34.526553, "es"),
    ("São Paulo", "São Paulo, Brasil", "BR", "Brasil", "city", -46.826039, -24.008814, -46.365052, -23.356792, "pt"),
    ("Rio de Janeiro", "Rio de Janeiro, Brasil", "BR", "Brasil", "city", -43.795449, -23.08302, -43.087707, -22.739823, "pt"),
    ("Paris", "Paris, France", "FR", "France", "city", 2.224101, 48.815521, 2.469905, 48.902146, "fr"),
    ("Berlin", "Berlin, Deutschland", "DE", "Deutschland", "city", 13.088304, 52.338079, 13.760909, 52.675323, "de"),
    ("München", "München, Bayern", "DE", "Deutschland", "city", 11.360777, 48.061625, 11.72291, 48.248216, "de"),
    ("Roma", "Roma, Lazio", "IT", "Italia", "city", 12.234418, 41.655865, 12.855708, 42.141013, "it"),
    ("İstanbul", "İstanbul, Türkiye", "TR", "Türkiye", "admin", 27.971165, 40.802731, 29.932773, 41.58454, "tr"),
    ("Jakarta Selatan", "Jakarta Selatan, DKI Jakarta", "ID", "Indonesia", "city", 106.759208, -6.369025, 106.875441, -6.199843, "in"),
    ("Москва", "Москва, Россия", "RU", "Россия", "city", 37.319271, 55.490616, 37.967682, 55.957565, "ru"),
    ("الرياض", "الرياض, المملكة العربية السعودية", "SA", "المملكة العربية السعودية", "city", 46.432934, 24.420061, 46.992751, 24.960787, "ar"),
    ("القاهرة", "القاهرة, مصر", "EG", "مصر", "city", 31.220052, 29.986945, 31.563705, 30.16191, "ar"),
    ("Mumbai", "Mumbai, India", "IN", "India", "city", 72.776333, 18.892607, 72.979731, 19.270177, "hi en"),
    ("New Delhi", "New Delhi, India", "IN", "India", "city", 76.84252, 28.397657, 77.347652, 28.879322, "hi en"),
    ("渋谷区", "東京 渋谷区", "JP", "日本", "city", 139.661223, 35.641009, 139.723741, 35.689548, "ja"),
    ("大阪市", "大阪 大阪市", "JP", "日本", "city", 135.375719, 34.577087, 135.601567, 34.769617, "ja"),
    ("서울특별시", "대한민국 서울특별시", "KR", "대한민국", "admin", 126.764773, 37.428962, 127.184243, 37.701022, "ko"),
    ("上海", "上海, 中国", "CN", "中国", "city", 121.103748, 30.916493, 121.803519, 31.412695, "zh"),
    ("Bangkok", "Bangkok, Thailand", "TH", "ประเทศไทย", "admin", 100.327868, 13.49308, 100.938642, 13.955111, "th"),
]


def _build_places():
    r = random.Random("firehose.places")
    out = []
    for name, full, cc, country, ptype, x0, y0, x1, y1, langs in _PLACE_DATA:
        pid = "%016x" % r.getrandbits(64)
        out.append({"id": pid, "name": name, "full_name": full, "country_code": cc, "country": country,
                    "place_type": ptype, "bbox": (x0, y0, x1, y1), "langs": langs.split()})
    return out


_PLACES = _build_places()
for _p in _PLACES:
    _x0, _y0, _x1, _y1 = _p["bbox"]
    _p["v11"] = _v11_escape(_dumps_ascii({
        "id": _p["id"], "url": "https://api.twitter.com/1.1/geo/id/%s.json" % _p["id"],
        "place_type": _p["place_type"], "name": _p["name"], "full_name": _p["full_name"],
        "country_code": _p["country_code"], "country": _p["country"],
        "bounding_box": {"type": "Polygon", "coordinates": [[[_x0, _y0], [_x0, _y1], [_x1, _y1], [_x1, _y0]]]},
        "attributes": {}}))
_PLACES_BY_LANG: dict = {}
for _p in _PLACES:
    for _l in _p["langs"]:
        _PLACES_BY_LANG.setdefault(_l, []).append(_p)

_DOW = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MON = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


_TIME_CACHE = [-1, ""]                          # last second formatted (a pure-function cache)


def _v11_time(ms: int) -> str:
    sec = ms // 1000
    c = _TIME_CACHE
    if c[0] == sec:
        return c[1]
    t = time.gmtime(sec)
    s = "%s %s %02d %02d:%02d:%02d +0000 %d" % (_DOW[t.tm_wday], _MON[t.tm_mon - 1], t.tm_mday,
                                                t.tm_hour, t.tm_min, t.tm_sec, t.tm_year)
    c[0] = sec
    c[1] = s
    return s


def _iso(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour,
                                                    t.tm_min, t.tm_sec, ms % 1000)


def _iso_s(ms: int) -> str:
    """ISO time at second precision, as v2 and Gnip render tweet times (``...:51.000Z``)."""
    return _iso(ms - ms % 1000)


def _gnip_ts(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03d+00:00" % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour,
                                                         t.tm_min, t.tm_sec, ms % 1000)


def _start_ms(start) -> int:
    if start is None:
        return DEFAULT_START_MS
    if isinstance(start, _dt.datetime):
        if start.tzinfo is None:
            start = start.replace(tzinfo=_dt.timezone.utc)
        ms = int(start.timestamp() * 1000)
    elif isinstance(start, str):
        d = _dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
        return _start_ms(d)
    elif isinstance(start, (int, float)) and not isinstance(start, bool):
        ms = int(start)
    else:
        raise TypeError(f"start must be None, epoch ms, a datetime or an ISO string, not {start!r}")
    if ms < 1293840000000:                      # 2011-01-01: snowflake ids need a later time
        raise ValueError("start must be on or after 2011-01-01 (snowflake ids need it)")
    return ms


_NO_REPLY = ('"in_reply_to_status_id":null,"in_reply_to_status_id_str":null,"in_reply_to_user_id":null,'
             '"in_reply_to_user_id_str":null,"in_reply_to_screen_name":null')

# Placeholders: pre-serialised sub-objects (users, embedded tweets) are spliced in after dumps.
_PH_USER = "\x00U"
_PH_RT = "\x00R"
_PH_QT = "\x00Q"
_PJ_USER = '"\\u0000U"'
_PJ_RT = '"\\u0000R"'
_PJ_QT = '"\\u0000Q"'


# --------------------------------------------------------------------------------------------
# The model: users and tweets, independent of dialect.
# --------------------------------------------------------------------------------------------

class _User:
    __slots__ = ("id", "sn", "name", "lang", "desc", "loc", "url", "verified", "protected",
                 "followers", "friends", "listed", "favs", "statuses", "created_ms", "img", "banner",
                 "colours", "default_profile", "geo_enabled", "withheld", "_v11", "_v2", "_act", "_mj")


class _Tweet:
    # class-level defaults: a new tweet sets only what differs (cheaper than __slots__ here)
    id = ms = user = lang = app = text = None
    ents = media = ()
    media_span = reply = quote = rt = place = coords = withheld = sensitive = None
    display_start = 0
    counts = (0, 0, 0, 0)
    web_tco = permalink_tco = _v11 = _v2 = _act = None


_USER_SLOTS = 12000
_POOL = 1024                                   # recent originals that get retweeted / quoted


class _Gen:
    def __init__(self, seed, start, dup_rate, malformed_rate, compliance_rate, dialect,
                 keepalive_rate):
        for name, v in (("dup_rate", dup_rate), ("malformed_rate", malformed_rate),
                        ("compliance_rate", compliance_rate), ("keepalive_rate", keepalive_rate)):
            if not (0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be within [0, 1], got {v!r}")
        if dup_rate + malformed_rate + compliance_rate + keepalive_rate > 0.9:
            raise ValueError("dup_rate + malformed_rate + compliance_rate + keepalive_rate "
                             "must leave room for tweets (sum <= 0.9)")
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
        self.seed = seed
        self.rng = _Rand(seed)
        self.start = _start_ms(start)
        self.ms = self.start
        self.dialect = dialect
        self.p_mal = malformed_rate
        self.p_dup = malformed_rate + dup_rate
        self.p_comp = self.p_dup + compliance_rate
        self.p_keep = self.p_comp + keepalive_rate
        self.users: dict = {}
        self.pool: list = []                     # originals available to retweet / quote
        self.pool_i = 0
        self.recent = deque(maxlen=20000)        # (id, user) of emitted statuses: deletes, replies
        self.dup_ring: list = []                 # recent emitted tweet lines
        self.dup_i = 0
        self.limit_track = 0
        self.rules_v2 = [(str(((self.start - 86400000 * (i + 3) - TWITTER_EPOCH_MS) << 22)
                              | self.rng.getrandbits(22)), tag) for i, tag in enumerate(
            ["lang:en sample", "news OR breaking", "#BTS", "crypto $BTC", "lang:ja has:media",
             "place_country:BR", "-is:retweet lang:es", "emoji \U0001F525"])]
        self.rules_gnip = [((self.start // 1000 - 86400 * (i + 5)) * 1000000 + self.rng.getrandbits(20),
                            tag) for i, tag in enumerate(["sample-10pct", "brand-monitoring",
                                                          "geo-tagged", None])]

    # ---- time and ids ----------------------------------------------------------------------
    def _snowflake(self, ms: int) -> int:
        return ((ms - TWITTER_EPOCH_MS) << 22) | self.rng.getrandbits(22)

    def _tco(self) -> str:
        return "https://t.co/" + self.rng.code(10)

    # ---- users -----------------------------------------------------------------------------
    def _user(self, i: int) -> _User:
        u = self.users.get(i)
        if u is None:
            u = self.users[i] = self._make_user(i)
        return u

    def _pick_user(self) -> _User:
        r = self.rng.random()
        return self._user(int(_USER_SLOTS * r * r))      # skewed: popular accounts tweet more

    def _make_user(self, i: int) -> _User:
        r = self.rng                       # drawn lazily from the main stream: still deterministic
        u = _User()
        lang = r.wpick(_LANG_TABLE)
        if lang not in _NAMES:
            lang = "en"
        u.lang = lang
        first, last = _NAMES[lang]
        if lang in ("ja", "ko", "zh"):
            u.name = r.pick(last) + r.pick(first) if r.random() < 0.5 else r.pick(first)
        else:
            u.name = r.pick(first) + " " + r.pick(last)
        if r.random() < 0.35:
            u.name += " " + r.pick(_EMOJI)
        base = r.pick(_HANDLES)
        suffix = r.pick(("", "_", "x", "the")) + str(int(r.random() * 10000))[:r.between(0, 4)]
        tag = ""
        n = i
        while True:
            tag = _B36[n % 36] + tag
            n //= 36
            if not n:
                break
        u.sn = (base + suffix)[:14 - len(tag)] + "_" + tag
        # account creation: 2007 .. start - 60 days; new accounts carry snowflake ids
        lo, hi = 1167609600000, self.start - 60 * 86400000
        u.created_ms = created = lo + int((hi - lo) * (r.random() ** 0.7))
        if created >= 1435708800000:                     # 2015-07: snowflake user ids
            u.id = ((created - TWITTER_EPOCH_MS) << 22) | r.getrandbits(22)
        else:
            frac = (created - lo) / (1435708800000 - lo)
            u.id = int(600000 + frac * frac * 3.3e9) + r.between(0, 99999)
        u.desc = self._words(lang, r.between(0, 70)) if r.random() < 0.8 else ""
        if r.random() < 0.5:
            u.desc += " " + "".join(r.many(_EMOJI, r.between(1, 3)))
        if r.random() < 0.2:
            u.desc += " | IG: @" + u.sn.lower() + " &amp; more"
        u.desc = u.desc.strip()
        u.loc = r.pick(_LOCATIONS[lang]) if r.random() < 0.6 else ""
        u.url = ("https://t.co/" + r.code(10)) if r.random() < 0.3 else None
        u.verified = r.random() < 0.01
        u.protected = False
        fol = int(10 ** (r.random() * 4.5)) + r.between(0, 50)
        if u.verified:
            fol = fol * 100 + r.between(10000, 5000000)
        u.followers = fol
        u.friends = int(10 ** (r.random() * 3.5))
        u.listed = fol // r.between(40, 400)
        u.favs = int(10 ** (r.random() * 5))
        u.statuses = int(10 ** (1 + r.random() * 4.7))
        img_id = ((max(created, 1300000000000) - TWITTER_EPOCH_MS) << 22) | r.getrandbits(22)
        u.img = "pbs.twimg.com/profile_images/%d/%s_normal.jpg" % (img_id, r.code(8))
        banner_s = self.start // 1000 - r.between(86400, 90000000)
        u.banner = "https://pbs.twimg.com/profile_banners/%d/%d" % (u.id, banner_s) if r.random() < 0.7 else None
        u.default_profile = r.random() < 0.4
        u.colours = _DEFAULT_COLOURS if u.default_profile else r.pick(_PALETTES)
        u.geo_enabled = r.random() < 0.3
        u.withheld = ["DE"] if r.random() < 0.002 else []
        u._v11 = u._v2 = u._act = u._mj = None
        return u

    def _user_v11(self, u: _User) -> str:
        s = u._v11
        if s is None:
            c = u.colours
            b = "true" if u.default_profile else "false"
            s = u._v11 = (
                '{"id":%d,"id_str":"%d","name":%s,"screen_name":"%s","location":%s,"url":%s,"description":%s,'
                '"translator_type":"none","protected":false,"verified":%s,"followers_count":%d,'
                '"friends_count":%d,"listed_count":%d,"favourites_count":%d,"statuses_count":%d,'
                '"created_at":"%s","utc_offset":null,"time_zone":null,"geo_enabled":%s,"lang":null,'
                '"contributors_enabled":false,"is_translator":false,"profile_background_color":"%s",'
                '"profile_background_image_url":"http:\\/\\/abs.twimg.com\\/images\\/themes\\/theme1\\/bg.png",'
                '"profile_background_image_url_https":"https:\\/\\/abs.twimg.com\\/images\\/themes\\/theme1\\/bg.png",'
                '"profile_background_tile":false,"profile_link_color":"%s","profile_sidebar_border_color":"%s",'
                '"profile_sidebar_fill_color":"%s","profile_text_color":"%s","profile_use_background_image":%s,'
                '"profile_image_url":"http:\\/\\/%s","profile_image_url_https":"https:\\/\\/%s"%s,'
                '"default_profile":%s,"default_profile_image":false,"following":null,"follow_request_sent":null,'
                '"notifications":null%s}' % (
                    u.id, u.id, _J(u.name), u.sn, _J(u.loc) if u.loc else "null",
                    _J(u.url) if u.url else "null", _J(u.desc) if u.desc else "null",
                    "true" if u.verified else "false", u.followers, u.friends, u.listed, u.favs, u.statuses,
                    _v11_time(u.created_ms), "true" if u.geo_enabled else "false", c[0], c[2], c[1], c[4], c[5], b,
                    u.img.replace("/", "\\/"), u.img.replace("/", "\\/"),
                    ',"profile_banner_url":%s' % _J(u.banner) if u.banner else "", b,
                    ',"withheld_in_countries":[%s]' % ",".join('"%s"' % x for x in u.withheld) if u.withheld else ""))
        return s

    def _user_v11_ref(self, u: _User) -> str:
        """Reference for _user_v11 (dict + json.dumps), used by _line_v11_ref."""
        c = u.colours
        d = {
            "id": u.id, "id_str": str(u.id), "name": u.name, "screen_name": u.sn,
            "location": u.loc or None, "url": u.url, "description": u.desc or None,
            "translator_type": "none", "protected": u.protected, "verified": u.verified,
            "followers_count": u.followers, "friends_count": u.friends, "listed_count": u.listed,
            "favourites_count": u.favs, "statuses_count": u.statuses,
            "created_at": _v11_time(u.created_ms), "utc_offset": None, "time_zone": None,
            "geo_enabled": u.geo_enabled, "lang": None, "contributors_enabled": False,
            "is_translator": False, "profile_background_color": c[0],
            "profile_background_image_url": "http://abs.twimg.com/images/themes/theme1/bg.png",
            "profile_background_image_url_https": "https://abs.twimg.com/images/themes/theme1/bg.png",
            "profile_background_tile": False, "profile_link_color": c[2],
            "profile_sidebar_border_color": c[1], "profile_sidebar_fill_color": c[4],
            "profile_text_color": c[5], "profile_use_background_image": u.default_profile,
            "profile_image_url": "http://" + u.img, "profile_image_url_https": "https://" + u.img,
        }
        if u.banner:
            d["profile_banner_url"] = u.banner
        d.update({"default_profile": u.default_profile, "default_profile_image": False,
                  "following": None, "follow_request_sent": None, "notifications": None})
        if u.withheld:
            d["withheld_in_countries"] = u.withheld
        return _v11_escape(_dumps_ascii(d))

    # ---- tweets ----------------------------------------------------------------------------
    def _new_tweet(self, ms: int, kind: str = "original") -> _Tweet:
        """A tweet record. kind: original | reply | quote | retweet."""
        rng = self.rng
        t = _Tweet()
        t.ms = ms
        t.id = self._snowflake(ms)
        t.user = u = self._pick_user()
        t.app = rng.wpick(_APP_TABLE)
        if kind == "retweet":
            t.rt = o = self._pick_original(ms)
            t.lang = o.lang
            if o.quote is not None:
                t.quote = o.quote
            return t
        lang = u.lang if rng.random() < 0.8 else rng.wpick(_LANG_TABLE)
        t.lang = lang
        if kind == "reply":
            if self.recent and rng.random() < 0.7:
                rid, ru = self.recent[-rng.between(1, len(self.recent))]
            else:
                ru = self._pick_user()
                rid = self._snowflake(ms - rng.between(5000, 86400000 * 3))
            t.reply = (rid, ru)
        elif kind == "quote":
            t.quote = self._pick_original(ms, quotable=True)
        self._compose(t)
        if rng.random() < 0.05 and u.geo_enabled or rng.random() < 0.02:
            places = _PLACES_BY_LANG.get(lang) or _PLACES
            p = t.place = rng.pick(places)
            if rng.random() < 0.35:
                x0, y0, x1, y1 = p["bbox"]
                t.coords = (round(x0 + (x1 - x0) * rng.random(), 8), round(y0 + (y1 - y0) * rng.random(), 8))
        if rng.random() < 0.003:
            t.withheld = rng.pick((["DE"], ["DE", "FR"], ["IN"], ["TR"], ["RU"], ["FR", "DE", "AT"]))
        if t.media or any(e[0] == "url" for e in t.ents):
            t.sensitive = rng.random() < 0.04
        return t

    def _pick_original(self, ms: int, quotable: bool = False) -> _Tweet:
        rng = self.rng
        pool = self.pool
        if len(pool) > 8 and rng.random() < 0.6:
            r = rng.random()
            o = pool[(self.pool_i - 1 - int(len(pool) * r * r)) % len(pool)]
            if not (quotable and o.quote is not None) and o.ms < ms - 1000:
                return o
        # an older original (seconds to weeks back), kept in the pool to be retweeted again
        back = int(2000 + 86400000 * 14 * rng.random() ** 6)
        o = self._new_tweet(ms - back, "original" if quotable or rng.random() < 0.85 else "quote")
        o.counts = (rng.between(1, 20000), rng.between(0, 90000), rng.between(0, 900), rng.between(0, 300))
        self._remember(o)
        return o

    def _remember(self, t: _Tweet) -> None:
        if len(self.pool) < _POOL:
            self.pool.append(t)
        else:
            self.pool[self.pool_i % _POOL] = t
        self.pool_i += 1

    def _words(self, lang: str, n_chars: int) -> str:
        text, bounds = _corpus(lang)
        i = int(self.rng.random() * (len(bounds) - 400))
        s = bounds[i]
        j = bisect_left(bounds, s + n_chars, i + 1)
        return text[s:bounds[j]].rstrip(" ")

    def _compose(self, t: _Tweet) -> None:
        """Build t.text and its entities: list of (kind, start, end, payload)."""
        rng = self.rng
        lang = t.lang
        tl, tags, half, amp_ok, cash_ok, lt_ok = _LANG_INFO[lang]
        segs = []                                      # (text, entity kind or None, payload)
        if t.reply is not None:
            segs.append(("@" + t.reply[1].sn, "mention", t.reply[1]))
            if rng.random() < 0.25:
                mu = self._pick_user()
                segs.append(("@" + mu.sn, "mention", mu))
        r = rng.random()
        if lang in ("und", "zxx"):
            body_len = 0
        elif r < 0.4:
            body_len = rng.between(15, 80)
        elif r < 0.72:
            body_len = rng.between(80, 135)
        else:
            body_len = rng.between(150, 270)
        if half:
            body_len //= 2
        if body_len:
            chunks = 1 + (body_len > 60) + (body_len > 150)
            per = body_len // chunks
            for c in range(chunks):
                segs.append((self._words(tl, per), None, None))
                x = rng.random()
                if x < 0.12:
                    h = rng.pick(tags)
                    segs.append(("#" + h, "hashtag", h))
                elif x < 0.25:
                    segs.append(("".join(rng.many(_EMOJI, rng.between(1, 3))), None, None))
                elif x < 0.29 and amp_ok:
                    segs.append(("&amp;", None, None))
                elif x < 0.31 and cash_ok:
                    s = rng.pick(_CASHTAGS)
                    segs.append(("$" + s, "symbol", s))
                elif x < 0.34 and lt_ok:
                    segs.append(("&lt;3", None, None))
                elif x < 0.40:
                    mu = self._pick_user()
                    segs.append(("@" + mu.sn, "mention", mu))
        elif lang == "und":
            segs.append(("".join(rng.many(_EMOJI, rng.between(1, 6))), None, None))
        if rng.random() < 0.14:
            for _ in range(rng.between(1, 3)):
                h = rng.pick(tags)
                segs.append(("#" + h, "hashtag", h))
        if rng.random() < 0.18 or lang == "zxx" and rng.random() < 0.5:
            dom, k = rng.pick(_DOMAINS)
            exp = dom + rng.code(k)
            bare = exp.split("://", 1)[1]
            disp = bare if len(bare) <= 26 else bare[:26] + "\u2026"
            tco = self._tco()
            segs.append((tco, "url", (exp, disp, '%s,"expanded_url":%s,"display_url":%s' % (
                _J(tco), _J(exp), _J(disp)))))
        media = ()
        if rng.random() < 0.16 or lang == "zxx":
            mtype = rng.wpick(_MEDIA_TABLE)
            k = rng.wpick(_NPHOTO_TABLE) if mtype == "photo" else 1
            base = t.ms - rng.between(1000, 60000)
            mid0 = ((base - TWITTER_EPOCH_MS) << 22) | (rng.getrandbits(18) << 4)
            media = tuple((mid0 + j, mtype,
                           rng.code(15), rng.pick(_DIMS),
                           rng.between(3000, 140000)) for j in range(k))
            segs.append((self._tco(), "media", None))
        # lay out: segments joined by single spaces; offsets in code points
        text_parts = []
        ents = []
        pos = 0
        display_start = 0
        lead = True
        media_span = None
        for s, kind, payload in segs:
            if text_parts:
                text_parts.append(" ")
                pos += 1
            end = pos + len(s)
            if kind == "media":
                media_span = (pos, end, s)
            elif kind is not None:
                ents.append((kind, pos, end, payload if kind != "url" else (s,) + payload))
            if lead and kind != "mention":
                lead = False
                display_start = pos
            text_parts.append(s)
            pos = end
        if lead:
            display_start = pos
        t.text = "".join(text_parts)
        t.ents = ents
        t.display_start = display_start
        t.media = media
        t.media_span = media_span
        if len(t.text) > 140:
            t.web_tco = self._tco()
        if t.quote is not None:
            t.permalink_tco = self._tco()

    # ---- v1.1 serialisation ---------------------------------------------------------------
    @staticmethod
    def _media_v11(t: _Tweet, span, extra: dict | None = None) -> list:
        s, e, tco = span
        sn = t.user.sn
        out = []
        for j, (mid, mtype, key, (w, h), dur) in enumerate(t.media):
            if mtype == "photo":
                murl = "pbs.twimg.com/media/%s.jpg" % key
            elif mtype == "video":
                murl = "pbs.twimg.com/ext_tw_video_thumb/%d/pu/img/%s.jpg" % (mid, key)
            else:
                murl = "pbs.twimg.com/tweet_video_thumb/%s.jpg" % key
            m = {"id": mid, "id_str": str(mid), "indices": [s, e], "media_url": "http://" + murl,
                 "media_url_https": "https://" + murl, "url": tco, "display_url": "pic.twitter.com/" + tco[13:],
                 "expanded_url": "https://twitter.com/%s/status/%d/%s/1" % (
                     sn, t.id, "photo" if mtype == "photo" else "video"),
                 "type": mtype,
                 "sizes": {"thumb": {"w": 150, "h": 150, "resize": "crop"},
                           "medium": {"w": min(w, 1200), "h": h * min(w, 1200) // w, "resize": "fit"},
                           "small": {"w": 680, "h": h * 680 // w, "resize": "fit"},
                           "large": {"w": w, "h": h, "resize": "fit"}}}
            if mtype == "video":
                m["video_info"] = {"aspect_ratio": [16, 9] if w > h else [9, 16], "duration_millis": dur,
                                   "variants": [
                                       {"bitrate": 2176000, "content_type": "video/mp4",
                                        "url": "https://video.twimg.com/ext_tw_video/%d/pu/vid/%dx%d/%s.mp4?tag=12" % (mid, w, h, key)},
                                       {"content_type": "application/x-mpegURL",
                                        "url": "https://video.twimg.com/ext_tw_video/%d/pu/pl/%s.m3u8?tag=12&container=fmp4" % (mid, key)},
                                       {"bitrate": 832000, "content_type": "video/mp4",
                                        "url": "https://video.twimg.com/ext_tw_video/%d/pu/vid/%dx%d/%s.mp4?tag=12" % (mid, w // 2, h // 2, key)}]}
            elif mtype == "animated_gif":
                m["video_info"] = {"aspect_ratio": [w // 40, h // 40], "variants": [
                    {"bitrate": 0, "content_type": "video/mp4", "url": "https://video.twimg.com/tweet_video/%s.mp4" % key}]}
            if extra:
                m.update(extra)
            out.append(m)
        return out

    @staticmethod
    def _ents_v11(ents, shift: int = 0, limit: int | None = None) -> dict:
        hashtags, urls, mentions, symbols = [], [], [], []
        for kind, s, e, p in ents:
            s += shift
            e += shift
            if limit is not None and e > limit:
                continue
            if kind == "hashtag":
                hashtags.append({"text": p, "indices": [s, e]})
            elif kind == "mention":
                mentions.append({"screen_name": p.sn, "name": p.name, "id": p.id, "id_str": str(p.id),
                                 "indices": [s, e]})
            elif kind == "url":
                urls.append({"url": p[0], "expanded_url": p[1], "display_url": p[2], "indices": [s, e]})
            else:
                symbols.append({"text": p, "indices": [s, e]})
        return {"hashtags": hashtags, "urls": urls, "user_mentions": mentions, "symbols": symbols}

    def _tweet_v11(self, t: _Tweet) -> dict:
        """The v1.1 dict of a tweet, with placeholders for user / retweeted / quoted status."""
        d = {"created_at": _v11_time(t.ms), "id": t.id, "id_str": str(t.id)}
        ext = None
        rt = t.rt
        if rt is not None:
            prefix = "RT @%s: " % rt.user.sn
            full = prefix + rt.text
            limit = None
            if len(full) > 140:
                full = full[:139] + "\u2026"
                limit = 139
            d["text"] = full
            ents = self._ents_v11(rt.ents, len(prefix), limit)
            ents["user_mentions"].insert(0, {"screen_name": rt.user.sn, "name": rt.user.name, "id": rt.user.id,
                                             "id_str": str(rt.user.id), "indices": [3, 4 + len(rt.user.sn)]})
            media = None
            if rt.media and (limit is None or rt.media_span[1] + len(prefix) <= limit):
                s, e, tco = rt.media_span
                src = {"source_status_id": rt.id, "source_status_id_str": str(rt.id),
                       "source_user_id": rt.user.id, "source_user_id_str": str(rt.user.id)}
                media = self._media_v11(rt, (s + len(prefix), e + len(prefix), tco), src)
                ents["media"] = media[:1]
        else:
            text = t.text
            media = self._media_v11(t, t.media_span) if t.media else None
            if len(text) <= 140:
                d["text"] = text
                if t.display_start or t.media:
                    d["display_text_range"] = [t.display_start, self._display_end(t)]
                ents = self._ents_v11(t.ents)
                if media:
                    ents["media"] = media[:1]
            else:
                prefix = self._compat_prefix(text)
                d["text"] = prefix + "\u2026 " + t.web_tco
                ents = self._ents_v11(t.ents, 0, len(prefix))
                w0 = len(prefix) + 2
                ents["urls"].append({"url": t.web_tco, "expanded_url": "https://twitter.com/i/web/status/%d" % t.id,
                                     "display_url": ("twitter.com/i/web/status/%d" % t.id)[:24] + "\u2026",
                                     "indices": [w0, w0 + len(t.web_tco)]})
                ext = {"full_text": text,
                       "display_text_range": [t.display_start, self._display_end(t)],
                       "entities": self._ents_v11(t.ents)}
                if media:
                    ext["entities"]["media"] = media[:1]
                    ext["extended_entities"] = {"media": media}
                media = None
        d["source"] = '<a href="%s" rel="nofollow">%s</a>' % (t.app[1], t.app[0])
        d["truncated"] = ext is not None
        if t.reply is not None:
            rid, ru = t.reply
            d.update({"in_reply_to_status_id": rid, "in_reply_to_status_id_str": str(rid),
                      "in_reply_to_user_id": ru.id, "in_reply_to_user_id_str": str(ru.id),
                      "in_reply_to_screen_name": ru.sn})
        else:
            d.update({"in_reply_to_status_id": None, "in_reply_to_status_id_str": None,
                      "in_reply_to_user_id": None, "in_reply_to_user_id_str": None,
                      "in_reply_to_screen_name": None})
        d["user"] = _PH_USER
        if t.coords is not None:
            lon, lat = t.coords
            d["geo"] = {"type": "Point", "coordinates": [lat, lon]}
            d["coordinates"] = {"type": "Point", "coordinates": [lon, lat]}
        else:
            d["geo"] = d["coordinates"] = None
        p = t.place
        if p is not None:
            x0, y0, x1, y1 = p["bbox"]
            d["place"] = {"id": p["id"], "url": "https://api.twitter.com/1.1/geo/id/%s.json" % p["id"],
                          "place_type": p["place_type"], "name": p["name"], "full_name": p["full_name"],
                          "country_code": p["country_code"], "country": p["country"],
                          "bounding_box": {"type": "Polygon", "coordinates": [[[x0, y0], [x0, y1], [x1, y1], [x1, y0]]]},
                          "attributes": {}}
        else:
            d["place"] = None
        d["contributors"] = None
        if rt is not None:
            d["retweeted_status"] = _PH_RT
        q = t.quote
        if q is not None:
            d["quoted_status_id"] = q.id
            d["quoted_status_id_str"] = str(q.id)
            d["quoted_status"] = _PH_QT
            qt = t.permalink_tco if rt is None else rt.permalink_tco
            perma = "twitter.com/%s/status/%d" % (q.user.sn, q.id)
            d["quoted_status_permalink"] = {"url": qt, "expanded": "https://" + perma, "display": perma[:26] + "\u2026"}
        d["is_quote_status"] = q is not None
        if ext is not None:
            d["extended_tweet"] = ext
        rc, fc, pc, qc = t.counts
        d.update({"quote_count": qc, "reply_count": pc, "retweet_count": rc, "favorite_count": fc,
                  "entities": ents, "favorited": False, "retweeted": False})
        if media:
            d["extended_entities"] = {"media": media}
        if t.sensitive is not None:
            d["possibly_sensitive"] = t.sensitive
        d["filter_level"] = "low"
        d["lang"] = t.lang
        if t.withheld:
            d["withheld_in_countries"] = t.withheld
        return d

    @staticmethod
    def _compat_prefix(text: str) -> str:
        """The start of a long text kept in the 140-character compat ``text``: cut at the last
        space before position 115 (entities, ``&amp;`` and emoji runs hold no space)."""
        cut = text.rfind(" ", 0, 115)
        prefix = text[:cut].rstrip(" ") if cut > 0 else ""
        return prefix or text[:113]

    @staticmethod
    def _display_end(t: _Tweet) -> int:
        if not t.media:
            return len(t.text)
        return max(t.display_start, t.media_span[0] - 1)

    def _splice_v11(self, t: _Tweet, s: str) -> str:
        # the user first: the embedded tweets spliced next hold no placeholders of their own
        s = _v11_escape(s).replace(_PJ_USER, self._user_v11_ref(t.user), 1)
        if t.rt is not None:
            s = s.replace(_PJ_RT, self._embedded_v11_ref(t.rt), 1)
        if t.quote is not None:
            s = s.replace(_PJ_QT, self._embedded_v11_ref(t.quote), 1)
        return s

    def _embedded_v11_ref(self, t: _Tweet) -> str:
        d = self._tweet_v11(t)
        del d["filter_level"]
        return self._splice_v11(t, _dumps_ascii(d))

    def _line_v11_ref(self, t: _Tweet) -> bytes:
        """Reference serialisation (dict + json.dumps): the tests check _line_v11 against it."""
        d = self._tweet_v11(t)
        d["timestamp_ms"] = str(t.ms)
        return self._splice_v11(t, _dumps_ascii(d)).encode("ascii") + b"\n"

    # ---- v1.1 fast path: the same bytes as _line_v11_ref, built from pre-escaped fragments --
    def _mention_core(self, u: _User) -> str:
        m = u._mj
        if m is None:
            m = u._mj = '"screen_name":%s,"name":%s,"id":%d,"id_str":"%d"' % (_J(u.sn), _J(u.name), u.id, u.id)
        return m

    def _ents_json(self, ents, shift: int = 0, limit=None, lead_mention: str = "", tail_url: str = "",
                   media: str = "") -> str:
        h, u, m, y = [], [], [], []
        if lead_mention:
            m.append(lead_mention)
        for kind, s, e, p in ents:
            s += shift
            e += shift
            if limit is not None and e > limit:
                continue
            if kind == "hashtag":                       # pool tags and symbols: no / < >
                h.append('{"text":%s,"indices":[%d,%d]}' % (_enc_ascii(p), s, e))
            elif kind == "mention":
                m.append('{%s,"indices":[%d,%d]}' % (self._mention_core(p), s, e))
            elif kind == "url":
                u.append('{"url":%s,"indices":[%d,%d]}' % (p[3], s, e))
            else:
                y.append('{"text":%s,"indices":[%d,%d]}' % (_enc_ascii(p), s, e))
        if tail_url:
            u.append(tail_url)
        return '{"hashtags":[%s],"urls":[%s],"user_mentions":[%s],"symbols":[%s]%s}' % (
            ",".join(h), ",".join(u), ",".join(m), ",".join(y), media and ',"media":[' + media + "]")

    @staticmethod
    def _media_json(t: _Tweet, s: int, e: int, extra: str = "") -> list:
        tco = t.media_span[2]
        sn = t.user.sn
        out = []
        for mid, mtype, key, (w, h), dur in t.media:
            if mtype == "photo":
                murl = "pbs.twimg.com\\/media\\/%s.jpg" % key
            elif mtype == "video":
                murl = "pbs.twimg.com\\/ext_tw_video_thumb\\/%d\\/pu\\/img\\/%s.jpg" % (mid, key)
            else:
                murl = "pbs.twimg.com\\/tweet_video_thumb\\/%s.jpg" % key
            mw = min(w, 1200)
            j = ('{"id":%d,"id_str":"%d","indices":[%d,%d],"media_url":"http:\\/\\/%s","media_url_https":"https:\\/\\/%s",'
                 '"url":"https:\\/\\/t.co\\/%s","display_url":"pic.twitter.com\\/%s",'
                 '"expanded_url":"https:\\/\\/twitter.com\\/%s\\/status\\/%d\\/%s\\/1","type":"%s",'
                 '"sizes":{"thumb":{"w":150,"h":150,"resize":"crop"},"medium":{"w":%d,"h":%d,"resize":"fit"},'
                 '"small":{"w":680,"h":%d,"resize":"fit"},"large":{"w":%d,"h":%d,"resize":"fit"}}'
                 % (mid, mid, s, e, murl, murl, tco[13:], tco[13:], sn, t.id,
                    "photo" if mtype == "photo" else "video", mtype, mw, h * mw // w, h * 680 // w, w, h))
            if mtype == "video":
                v = "https:\\/\\/video.twimg.com\\/ext_tw_video\\/%d\\/pu\\/" % mid
                j += (',"video_info":{"aspect_ratio":%s,"duration_millis":%d,"variants":['
                      '{"bitrate":2176000,"content_type":"video\\/mp4","url":"%svid\\/%dx%d\\/%s.mp4?tag=12"},'
                      '{"content_type":"application\\/x-mpegURL","url":"%spl\\/%s.m3u8?tag=12&container=fmp4"},'
                      '{"bitrate":832000,"content_type":"video\\/mp4","url":"%svid\\/%dx%d\\/%s.mp4?tag=12"}]}'
                      % ("[16,9]" if w > h else "[9,16]", dur, v, w, h, key, v, key, v, w // 2, h // 2, key))
            elif mtype == "animated_gif":
                j += (',"video_info":{"aspect_ratio":[%d,%d],"variants":[{"bitrate":0,"content_type":"video\\/mp4",'
                      '"url":"https:\\/\\/video.twimg.com\\/tweet_video\\/%s.mp4"}]}' % (w // 40, h // 40, key))
            out.append(j + extra + "}")
        return out

    def _json_v11(self, t: _Tweet, top: bool) -> str:
        """The v1.1 JSON text of a tweet (escaped as the API did): a stream line if ``top``,
        else the form embedded as retweeted_status / quoted_status. Both share everything up to
        ``filter_level``, which is built once and kept while the tweet may still be embedded."""
        core = t._v11
        if core is None:
            core = self._core_v11(t)
            if t.rt is None:                        # originals may be retweeted or quoted later
                t._v11 = core
        tail = ',"lang":"%s"%s' % (t.lang, ',"withheld_in_countries":[%s]' % ",".join(
            '"%s"' % c for c in t.withheld) if t.withheld else "")
        if top:
            return '%s,"filter_level":"low"%s,"timestamp_ms":"%d"}' % (core, tail, t.ms)
        return core + tail + "}"

    def _core_v11(self, t: _Tweet) -> str:
        ext = ""
        xmedia = ""
        extra = ""
        rt = t.rt
        if rt is not None:
            ru = rt.user
            prefix = "RT @%s: " % ru.sn
            full = prefix + rt.text
            limit = None
            if len(full) > 140:
                full = full[:139] + "\u2026"
                limit = 139
            text_json = _J(full)
            mj = ""
            if rt.media and (limit is None or rt.media_span[1] + len(prefix) <= limit):
                s, e, tco = rt.media_span
                items = self._media_json(rt, s + len(prefix), e + len(prefix),
                                         ',"source_status_id":%d,"source_status_id_str":"%d","source_user_id":%d,'
                                         '"source_user_id_str":"%d"' % (rt.id, rt.id, ru.id, ru.id))
                mj = items[0]
                xmedia = ",".join(items)
            ents = self._ents_json(rt.ents, len(prefix), limit,
                                   '{%s,"indices":[3,%d]}' % (self._mention_core(ru), 4 + len(ru.sn)), "", mj)
        else:
            text = t.text
            items = self._media_json(t, t.media_span[0], t.media_span[1]) if t.media else None
            if len(text) <= 140:
                text_json = _J(text)
                if t.display_start or items:
                    extra = ',"display_text_range":[%d,%d]' % (t.display_start, self._display_end(t))
                if items:
                    ents = self._ents_json(t.ents, media=items[0])
                    xmedia = ",".join(items)
                else:
                    ents = self._ents_json(t.ents)
            else:
                prefix = self._compat_prefix(text)
                text_json = _J(prefix + "\u2026 " + t.web_tco)
                w0 = len(prefix) + 2
                web = ('{"url":%s,"expanded_url":"https:\\/\\/twitter.com\\/i\\/web\\/status\\/%d",'
                       '"display_url":%s,"indices":[%d,%d]}'
                       % (_J(t.web_tco), t.id, _J(("twitter.com/i/web/status/%d" % t.id)[:24] + "\u2026"),
                          w0, w0 + len(t.web_tco)))
                ents = self._ents_json(t.ents, 0, len(prefix), "", web)
                ext = ',"extended_tweet":{"full_text":%s,"display_text_range":[%d,%d],"entities":%s%s}' % (
                    _J(text), t.display_start, self._display_end(t),
                    self._ents_json(t.ents, media=items[0] if items else ""),
                    ',"extended_entities":{"media":[%s]}' % ",".join(items) if items else "")
        if t.reply is not None:
            rid, ru = t.reply
            reply = ('"in_reply_to_status_id":%d,"in_reply_to_status_id_str":"%d","in_reply_to_user_id":%d,'
                     '"in_reply_to_user_id_str":"%d","in_reply_to_screen_name":"%s"' % (rid, rid, ru.id, ru.id, ru.sn))
        else:
            reply = _NO_REPLY
        if t.coords is not None:
            lon, lat = t.coords
            geo = ('{"type":"Point","coordinates":[%r,%r]},"coordinates":{"type":"Point","coordinates":[%r,%r]}'
                   % (lat, lon, lon, lat))
        else:
            geo = 'null,"coordinates":null'
        q = t.quote
        if rt is not None:
            qs = ',"retweeted_status":' + self._json_v11(rt, False)
        else:
            qs = ""
        if q is not None:
            qt = t.permalink_tco if rt is None else rt.permalink_tco
            qsn = q.user.sn
            qs += (',"quoted_status_id":%d,"quoted_status_id_str":"%d","quoted_status":%s,'
                   '"quoted_status_permalink":{"url":%s,"expanded":%s,"display":%s},"is_quote_status":true'
                   % (q.id, q.id, self._json_v11(q, False), _J(qt),
                      _J("https://twitter.com/%s/status/%d" % (qsn, q.id)),
                      _J(("twitter.com/%s/status/%d" % (qsn, q.id))[:26] + "\u2026")))
        else:
            qs += ',"is_quote_status":false'
        rc, fc, pc, qc = t.counts
        return ('{"created_at":"%s","id":%d,"id_str":"%d","text":%s%s,"source":%s,"truncated":%s,%s,"user":%s,'
                '"geo":%s,"place":%s,"contributors":null%s%s,"quote_count":%d,"reply_count":%d,'
                '"retweet_count":%d,"favorite_count":%d,"entities":%s,"favorited":false,"retweeted":false%s%s'
                % (_v11_time(t.ms), t.id, t.id, text_json, extra, t.app[3], "true" if ext else "false", reply,
                   self._user_v11(t.user), geo, t.place["v11"] if t.place is not None else "null", qs, ext,
                   qc, pc, rc, fc, ents, ',"extended_entities":{"media":[%s]}' % xmedia if xmedia else "",
                   "" if t.sensitive is None else ',"possibly_sensitive":true' if t.sensitive
                   else ',"possibly_sensitive":false'))

    def _line_v11(self, t: _Tweet) -> bytes:
        return self._json_v11(t, True).encode("ascii") + b"\n"

    # ---- v2 serialisation -----------------------------------------------------------------
    def _user_v2(self, u: _User) -> dict:
        if u._v2 is None:
            d = {"id": str(u.id), "name": u.name, "username": u.sn, "created_at": _iso_s(u.created_ms),
                 "description": u.desc, "location": u.loc or None, "url": u.url or "",
                 "verified": u.verified, "protected": u.protected,
                 "profile_image_url": "https://" + u.img,
                 "public_metrics": {"followers_count": u.followers, "following_count": u.friends,
                                    "tweet_count": u.statuses, "listed_count": u.listed}}
            if d["location"] is None:
                del d["location"]
            if u.withheld:
                d["withheld"] = {"country_codes": u.withheld}
            u._v2 = d
        return u._v2

    @staticmethod
    def _media_key(mid: int, mtype: str) -> str:
        return ("3_" if mtype == "photo" else "7_" if mtype == "video" else "16_") + str(mid)

    def _tweet_v2(self, t: _Tweet, inc: dict) -> dict:
        """v2 tweet object; referenced users/tweets/media/places are added to ``inc``."""
        users = inc["users"]
        users.setdefault(t.user.id, self._user_v2(t.user))
        d = {"id": str(t.id), "created_at": _iso_s(t.ms), "author_id": str(t.user.id)}
        rt = t.rt
        if rt is not None:
            prefix = "RT @%s: " % rt.user.sn
            text = prefix + rt.text
            shift, limit = len(prefix), None
            if len(text) > 140:
                text = text[:139] + "\u2026"
                limit = 139
            src_ents = [(k, s + shift, e + shift, p) for k, s, e, p in rt.ents]
            ents = [("mention", 3, 4 + len(rt.user.sn), rt.user)]
            ents += [e for e in src_ents if limit is None or e[2] <= limit]
            d["text"] = text
            d["conversation_id"] = str(t.id)
            d["referenced_tweets"] = [{"type": "retweeted", "id": str(rt.id)}]
            inc["tweets"].setdefault(rt.id, rt)
            users.setdefault(rt.user.id, self._user_v2(rt.user))
            media_span = None
        else:
            d["text"] = t.text
            ents = t.ents
            conv = t.id
            if t.reply is not None:
                rid, ru = t.reply
                conv = rid
                d["in_reply_to_user_id"] = str(ru.id)
                d["referenced_tweets"] = [{"type": "replied_to", "id": str(rid)}]
                users.setdefault(ru.id, self._user_v2(ru))
            if t.quote is not None:
                d.setdefault("referenced_tweets", []).append({"type": "quoted", "id": str(t.quote.id)})
                inc["tweets"].setdefault(t.quote.id, t.quote)
                users.setdefault(t.quote.user.id, self._user_v2(t.quote.user))
            d["conversation_id"] = str(conv)
            media_span = t.media_span
        d["lang"] = t.lang
        d["source"] = t.app[0]
        d["possibly_sensitive"] = bool(t.sensitive)
        d["reply_settings"] = "everyone"
        rc, fc, pc, qc = t.counts
        d["public_metrics"] = {"retweet_count": rc, "reply_count": pc, "like_count": fc, "quote_count": qc}
        d["edit_history_tweet_ids"] = [str(t.id)]
        e2: dict = {}
        for kind, s, e, p in ents:
            if kind == "hashtag":
                e2.setdefault("hashtags", []).append({"start": s, "end": e, "tag": p})
            elif kind == "mention":
                e2.setdefault("mentions", []).append({"start": s, "end": e, "username": p.sn, "id": str(p.id)})
                users.setdefault(p.id, self._user_v2(p))
            elif kind == "url":
                e2.setdefault("urls", []).append({"start": s, "end": e, "url": p[0], "expanded_url": p[1],
                                                  "display_url": p[2]})
            else:
                e2.setdefault("cashtags", []).append({"start": s, "end": e, "tag": p})
        if media_span is not None:
            s, e, tco = media_span
            keys = [self._media_key(m[0], m[1]) for m in t.media]
            e2.setdefault("urls", []).append({"start": s, "end": e, "url": tco,
                                              "expanded_url": "https://twitter.com/%s/status/%d/photo/1" % (t.user.sn, t.id),
                                              "display_url": "pic.twitter.com/" + tco[13:], "media_key": keys[0]})
            d["attachments"] = {"media_keys": keys}
            for (mid, mtype, key, (w, h), dur), mk in zip(t.media, keys):
                m = {"media_key": mk, "type": mtype, "width": w, "height": h}
                if mtype == "photo":
                    m["url"] = "https://pbs.twimg.com/media/%s.jpg" % key
                else:
                    m["preview_image_url"] = "https://pbs.twimg.com/ext_tw_video_thumb/%d/pu/img/%s.jpg" % (mid, key)
                    if mtype == "video":
                        m["duration_ms"] = dur
                inc["media"].setdefault(mk, m)
        if e2:
            d["entities"] = e2
        if t.place is not None:
            p = t.place
            g = {}
            if t.coords is not None:
                g["coordinates"] = {"type": "Point", "coordinates": [t.coords[0], t.coords[1]]}
            g["place_id"] = p["id"]
            d["geo"] = g
            inc["places"].setdefault(p["id"], {"full_name": p["full_name"], "id": p["id"], "country": p["country"],
                                               "country_code": p["country_code"], "name": p["name"],
                                               "place_type": p["place_type"],
                                               "geo": {"type": "Feature", "bbox": list(p["bbox"]), "properties": {}}})
        if t.withheld:
            d["withheld"] = {"copyright": False, "country_codes": t.withheld}
        return d

    def _line_v2(self, t: _Tweet) -> bytes:
        inc = {"users": {}, "tweets": {}, "media": {}, "places": {}}
        data = self._tweet_v2(t, inc)
        tweets = []
        done = 0
        while done < len(inc["tweets"]):              # referenced tweets, and theirs
            r = list(inc["tweets"].values())[done]
            tweets.append(self._tweet_v2(r, inc))
            done += 1
        includes = {"users": list(inc["users"].values())}
        if tweets:
            includes["tweets"] = tweets
        if inc["media"]:
            includes["media"] = list(inc["media"].values())
        if inc["places"]:
            includes["places"] = list(inc["places"].values())
        rng = self.rng
        rules = self.rules_v2[rng.between(0, 7):][:1 if rng.random() < 0.85 else 2]
        env = {"data": data, "includes": includes,
               "matching_rules": [{"id": rid, "tag": tag} for rid, tag in rules]}
        return _v2_text(env).encode("utf-8") + b"\n"

    # ---- Gnip activity serialisation -----------------------------------------------------
    def _actor(self, u: _User) -> dict:
        if u._act is None:
            a = {"objectType": "person", "id": "id:twitter.com:%d" % u.id,
                 "link": "http://www.twitter.com/" + u.sn, "displayName": u.name,
                 "postedTime": _iso_s(u.created_ms), "image": "https://" + u.img, "summary": u.desc or None,
                 "links": [{"href": u.url, "rel": "me"}], "friendsCount": u.friends,
                 "followersCount": u.followers, "listedCount": u.listed, "statusesCount": u.statuses,
                 "twitterTimeZone": None, "verified": u.verified, "utcOffset": None,
                 "preferredUsername": u.sn, "languages": [u.lang], "favoritesCount": u.favs}
            if u.loc:
                a["location"] = {"objectType": "place", "displayName": u.loc}
            u._act = a
        return u._act

    def _activity(self, t: _Tweet, top: bool) -> dict:
        rt = t.rt
        a = {"id": "tag:search.twitter.com,2005:%d" % t.id, "objectType": "activity",
             "actor": self._actor(t.user), "verb": "share" if rt is not None else "post",
             "postedTime": _iso_s(t.ms), "generator": {"displayName": t.app[0], "link": t.app[1]},
             "provider": {"objectType": "service", "displayName": "Twitter", "link": "http://www.twitter.com"},
             "link": "http://twitter.com/%s/statuses/%d" % (t.user.sn, t.id)}
        if rt is not None:
            prefix = "RT @%s: " % rt.user.sn
            body = prefix + rt.text
            limit = None
            if len(body) > 140:
                body = body[:139] + "\u2026"
                limit = 139
            a["body"] = body
            a["object"] = self._activity(rt, False)
            ents = self._ents_v11(rt.ents, len(prefix), limit)
            ents["user_mentions"].insert(0, {"screen_name": rt.user.sn, "name": rt.user.name, "id": rt.user.id,
                                             "id_str": str(rt.user.id), "indices": [3, 4 + len(rt.user.sn)]})
            a["twitter_entities"] = ents
        else:
            text = t.text
            media = self._media_v11(t, t.media_span) if t.media else None
            if len(text) > 140:
                prefix = self._compat_prefix(text)
                a["body"] = prefix + "\u2026 " + t.web_tco
                a["long_object"] = {"body": text, "display_text_range": [t.display_start, len(text)],
                                    "twitter_entities": self._ents_v11(t.ents)}
                if media:
                    a["long_object"]["twitter_entities"]["media"] = media[:1]
                    a["long_object"]["twitter_extended_entities"] = {"media": media}
                a["twitter_entities"] = self._ents_v11(t.ents, 0, len(prefix))
            else:
                a["body"] = text
                ents = self._ents_v11(t.ents)
                if media:
                    ents["media"] = media[:1]
                    a["twitter_extended_entities"] = {"media": media}
                a["twitter_entities"] = ents
            a["object"] = {"objectType": "note", "id": "object:search.twitter.com,2005:%d" % t.id,
                           "summary": text, "link": a["link"], "postedTime": a["postedTime"]}
            if t.reply is not None:
                rid, ru = t.reply
                a["inReplyTo"] = {"link": "http://twitter.com/%s/statuses/%d" % (ru.sn, rid)}
            if t.quote is not None:
                a["twitter_quoted_status"] = self._activity(t.quote, False)
        a["favoritesCount"] = t.counts[1]
        if t.place is not None:
            p = t.place
            x0, y0, x1, y1 = p["bbox"]
            a["location"] = {"objectType": "place", "displayName": p["full_name"], "name": p["name"],
                             "country_code": p["country"], "twitter_country_code": p["country_code"],
                             "link": "https://api.twitter.com/1.1/geo/id/%s.json" % p["id"],
                             "geo": {"type": "Polygon", "coordinates": [[[x0, y0], [x0, y1], [x1, y1], [x1, y0]]]},
                             "twitter_place_type": p["place_type"]}
        if t.coords is not None:
            a["geo"] = {"type": "Point", "coordinates": [t.coords[1], t.coords[0]]}
        a["twitter_filter_level"] = "low"
        a["twitter_lang"] = t.lang
        a["retweetCount"] = t.counts[0]
        if top:
            rules = self.rules_gnip[self.rng.between(0, 3):][:1 if self.rng.random() < 0.85 else 2]
            a["gnip"] = {"matching_rules": [{"tag": tag, "id": rid, "id_str": str(rid)} for rid, tag in rules]}
        return a

    def _line_activity(self, t: _Tweet) -> bytes:
        return _dumps_utf8(self._activity(t, True)).replace("/", "\\/").encode("utf-8") + b"\n"

    # ---- compliance / stream messages -----------------------------------------------------
    def _compliance(self, dialect: str) -> tuple:
        rng = self.rng
        self.ms += rng.between(0, 2)
        ms = self.ms
        if self.recent and rng.random() < 0.6:
            tid, u = self.recent[-rng.between(1, len(self.recent))]
        else:
            u = self._pick_user()
            tid = self._snowflake(ms - rng.between(60000, 86400000 * 400))
        uid = u.id
        x = rng.random()
        if dialect == "v1.1":
            if x < 0.84:
                kind, m = "delete", {"delete": {"status": {"id": tid, "id_str": str(tid), "user_id": uid,
                                                           "user_id_str": str(uid)}, "timestamp_ms": str(ms)}}
            elif x < 0.93:
                self.limit_track += rng.between(1, 400)
                kind, m = "limit", {"limit": {"track": self.limit_track, "timestamp_ms": str(ms)}}
            elif x < 0.965:
                kind, m = "scrub_geo", {"scrub_geo": {"user_id": uid, "user_id_str": str(uid), "up_to_status_id": tid,
                                                      "up_to_status_id_str": str(tid), "timestamp_ms": str(ms)}}
            elif x < 0.985:
                kind, m = "status_withheld", {"status_withheld": {
                    "id": tid, "user_id": uid, "withheld_in_countries": rng.pick((["de"], ["in"], ["tr", "ru"])),
                    "timestamp_ms": str(ms)}}
            elif x < 0.995:
                kind, m = "user_withheld", {"user_withheld": {"id": uid, "withheld_in_countries": ["DE", "FR"],
                                                              "timestamp_ms": str(ms)}}
            else:
                kind, m = "warning", {"warning": {"code": "FALLING_BEHIND", "message": "Your connection is falling "
                                                  "behind and messages are being queued for delivery to you. Your "
                                                  "queue is now over 60% full. You will be disconnected when the "
                                                  "queue is full.", "percent_full": rng.between(60, 95),
                                                  "timestamp_ms": str(ms)}}
            return "compliance:" + kind, _v11_escape(_dumps_ascii(m)).encode("ascii") + b"\n"
        if dialect == "v2":
            ev = _iso(ms)
            if x < 0.85:
                kind, m = "delete", {"delete": {"tweet": {"id": str(tid), "author_id": str(uid)}, "event_at": ev}}
            elif x < 0.92:
                kind, m = "status_withheld", {"withheld": {"tweet": {"id": str(tid), "author_id": str(uid)},
                                                           "withheld_in_countries": ["DE"], "event_at": ev}}
            elif x < 0.96:
                kind, m = "scrub_geo", {"scrub_geo": {"user": {"id": str(uid)}, "up_to_tweet_id": str(tid),
                                                      "event_at": ev}}
            else:
                kind = rng.pick(("user_suspend", "user_protect", "user_delete", "user_undelete"))
                m = {kind: {"user": {"id": str(uid)}, "event_at": ev}}
            return "compliance:" + kind, _dumps_utf8({"data": m}).encode("utf-8") + b"\n"
        # Gnip activity streams
        if x < 0.97:
            if x < 0.85:
                kind, m = "delete", {"objectType": "activity", "verb": "delete",
                                     "object": {"id": "tag:search.twitter.com,2005:%d" % tid},
                                     "actor": {"id": "id:twitter.com:%d" % uid}, "timestampMs": _gnip_ts(ms)}
            elif x < 0.92:
                kind, m = "status_withheld", {"verb": "status_withheld", "object": {
                    "id": "tag:search.twitter.com,2005:%d" % tid,
                    "user_id": "tag:search.twitter.com,2012:user/%d" % uid, "withheld_in_countries": ["XY"]},
                    "timestampMs": _gnip_ts(ms)}
            else:
                kind, m = "scrub_geo", {"objectType": "activity", "verb": "scrub_geo",
                                        "actor": {"id": "id:twitter.com:%d" % uid},
                                        "target": {"up_to_id": "tag:search.twitter.com,2005:%d" % tid},
                                        "timestampMs": _gnip_ts(ms)}
        else:
            sent = _gnip_ts(ms)[:-10] + "+00:00"                 # Gnip sends these without ms
            kind, m = "system_info", {"info": {"message": "Replay Request Completed", "sent": sent}}
        return "compliance:" + kind, _dumps_utf8(m).replace("/", "\\/").encode("utf-8") + b"\n"

    # ---- malformed lines ------------------------------------------------------------------
    def _malformed(self, dialect: str) -> tuple:
        rng = self.rng
        reason = rng.pick(MALFORMED_KINDS)
        if reason == "missing_id":
            return "reject:missing_id", self._missing_id(dialect)
        t = self._fresh_status()
        line = self._serialise(t, dialect)[:-1]
        key = b'"body":"' if dialect == "activity" else b'"text":"'
        at = line.find(key) + len(key)
        if reason == "truncated":
            p = rng.between(len(line) // 10, len(line) - 3)
            i = line.find(b',"', p)
            if i < 0:
                i = line.rfind(b',"')
            line = line[:i + 1]
        elif reason == "invalid_json":
            v = rng.between(0, 3)
            if v == 0:
                line += b"}"                                  # trailing data
            elif v == 1:
                line = line[:at] + b"\t" + line[at:]          # raw control character in a string
            elif v == 2 and b":false" in line:
                line = line.replace(b":false", b":False", 1)
            elif b'","' in line:
                line = line.replace(b'","', b'",,"', 1)
            else:
                line += b"x"
        elif reason == "invalid_utf8":
            bad = rng.pick((b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe3\x81 ", b"\xf4\x90\x80\x80", b"\x80"))
            line = line[:at] + bad + line[at:]
        elif reason == "invalid_escape":
            bad = rng.pick((b"\\x41", b"\\'", b"\\U0001F600", b"\\a", b"\\u12G4", b"\\ "))
            line = line[:at] + bad + line[at:]
        else:                                                 # lone_surrogate
            bad = rng.pick((b"\\ud83d ", b"\\udc00", b"\\uD83D\\u0041", b"\\ud83d\\ud83d", b"\\uDFFF"))
            line = line[:at] + bad + line[at:]
        return "reject:" + reason, line + b"\n"

    def _missing_id(self, dialect: str) -> bytes:
        rng = self.rng
        v = rng.between(0, 4)
        if v == 4:                                     # a delete without its status id
            self.ms += 1
            u = self._pick_user()
            if dialect == "v2":
                m = {"data": {"delete": {"tweet": {"author_id": str(u.id)}, "event_at": _iso(self.ms)}}}
                return _dumps_utf8(m).encode() + b"\n"
            if dialect == "activity":
                m = {"objectType": "activity", "verb": "delete", "object": {"id": "tag:search.twitter.com,2005:"},
                     "actor": {"id": "id:twitter.com:%d" % u.id}, "timestampMs": _gnip_ts(self.ms)}
                return _dumps_utf8(m).encode() + b"\n"
            m = {"delete": {"status": {"user_id": u.id, "user_id_str": str(u.id)}, "timestamp_ms": str(self.ms)}}
            return _dumps_ascii(m).encode() + b"\n"
        t = self._fresh_status()
        line = self._serialise(t, dialect)
        if dialect == "v1.1":
            sid = str(t.id).encode()
            bad_id, bad_str = ((b"null", b"null"), (b"-" + sid, b'"' + sid + b'x"'),
                               (sid[:3] + b"." + sid[3:], b'""'), (b"9223372036854775808", b'"9223372036854775808"'))[v]
            return line.replace(b'"id":' + sid + b',"id_str":"' + sid + b'"',
                                b'"id":' + bad_id + b',"id_str":' + bad_str, 1)
        if dialect == "v2":
            sid = str(t.id).encode()
            bad = (b'"id":null', b'"id":"xxx"', b'"id":"-' + sid + b'"', b'"id":1.5e18')[v]
            return line.replace(b'"id":"' + sid + b'"', bad, 1)
        return line.replace(b'"id":"tag:search.twitter.com,2005:%d"' % t.id,
                            (b'"id":null', b'"id":"tag:search.twitter.com,2005:"',
                             b'"id":"tag:search.twitter.com,2005:abc"',
                             b'"id":"tag:search.twitter.com,2005:99999999999999999999"')[v], 1)

    # ---- main loop ------------------------------------------------------------------------
    def _fresh_status(self) -> _Tweet:
        rng = self.rng
        self.ms += rng.between(1, 4)
        x = rng.random()
        if x < 0.22:
            kind = "retweet"
        elif x < 0.38:
            kind = "reply"
        elif x < 0.43:
            kind = "quote"
        else:
            kind = "original"
        return self._new_tweet(self.ms, kind)

    def _serialise(self, t: _Tweet, dialect: str) -> bytes:
        if dialect == "v1.1":
            return self._line_v11(t)
        if dialect == "v2":
            return self._line_v2(t)
        return self._line_activity(t)

    def _dialect(self) -> str:
        if self.dialect != "mixed":
            return self.dialect
        x = self.rng.random()
        return "v1.1" if x < 0.6 else "v2" if x < 0.85 else "activity"

    def lines(self, n: int) -> Iterator[tuple]:
        rng = self.rng
        ring = self.dup_ring
        for _ in range(n):
            x = rng.random()
            if x < self.p_mal:
                yield self._malformed(self._dialect())
            elif x < self.p_dup:
                if ring:
                    r = rng.random()
                    yield "duplicate", ring[(self.dup_i - 1 - int(len(ring) * r * r)) % len(ring)]
                else:                                    # nothing to re-send yet
                    yield self._status_line()
            elif x < self.p_comp:
                yield self._compliance(self._dialect())
            elif x < self.p_keep:
                yield "blank", b"\r\n"
            else:
                yield self._status_line()

    def _status_line(self) -> tuple:
        t = self._fresh_status()
        line = self._serialise(t, self._dialect())
        ring = self.dup_ring
        if len(ring) < 4096:
            ring.append(line)
        else:
            ring[self.dup_i % 4096] = line
        self.dup_i += 1
        self.recent.append((t.id, t.user))
        if t.rt is None:
            self._remember(t)
        return "tweet", line


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def generate_labeled(n: int, seed: int = 0, dup_rate: float = 0.02, malformed_rate: float = 0.0,
                     compliance_rate: float = 0.03, start=None, dialect: str = "v1.1",
                     keepalive_rate: float = 0.0) -> Iterator[tuple[str, bytes]]:
    """Like :func:`generate`, yielding ``(label, line)``; the label says what a decoder must make
    of the line: ``"tweet"``, ``"duplicate"`` (a byte-for-byte re-send of an earlier tweet line),
    ``"blank"``, ``"compliance:<kind>"`` or ``"reject:<reason>"`` (kinds and reasons as in
    :mod:`firehose.schema`)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    g = _Gen(seed, start, dup_rate, malformed_rate, compliance_rate, dialect, keepalive_rate)
    return g.lines(n)


def generate(n: int, seed: int = 0, dup_rate: float = 0.02, malformed_rate: float = 0.0,
             compliance_rate: float = 0.03, start=None, dialect: str = "v1.1",
             keepalive_rate: float = 0.0) -> Iterator[bytes]:
    """Yield ``n`` lines (bytes ending in ``b"\\n"``) of a deterministic synthetic firehose.

    ``dup_rate``, ``malformed_rate``, ``compliance_rate`` and ``keepalive_rate`` are the shares
    of lines that re-send an earlier tweet line byte for byte (a recent one), are broken (cut
    off, invalid JSON, invalid UTF-8, bad escape, lone surrogate, missing id), are stream /
    compliance messages, or are blank keep-alives. Time starts at ``start`` (epoch ms, datetime
    or ISO string; default 2022-03-01T00:00:00Z) and advances 1-4 ms per status. ``dialect``:
    ``"v1.1"`` (default), ``"v2"``, ``"activity"`` (Gnip) or ``"mixed"``. Arguments are checked
    when called (``ValueError``), not at the first ``next()``.
    """
    labeled = generate_labeled(n, seed, dup_rate, malformed_rate, compliance_rate, start, dialect,
                               keepalive_rate)
    return (line for _, line in labeled)


def generate_mixed(n: int, seed: int = 0, **kw) -> Iterator[bytes]:
    """:func:`generate` with ``dialect="mixed"``: v1.1 statuses (60%) interleaved with v2
    filtered-stream envelopes (25%) and Gnip activities (15%), each with its own compliance
    messages."""
    kw["dialect"] = "mixed"
    return generate(n, seed, **kw)


def generate_bytes(n: int, **kw) -> bytes:
    """The whole capture of :func:`generate` as one bytes object (small ``n`` only)."""
    return b"".join(generate(n, **kw))


def _open_sink(path, level: int | None):
    """(file object to write, list of things to close in order)."""
    if hasattr(path, "write"):
        return path, []
    p = os.fspath(path)
    if p == "-":
        return sys.stdout.buffer, []
    raw = open(p, "wb")
    if p.endswith(".gz"):
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                           compresslevel=6 if level is None else level)
        return gz, [gz, raw]
    if p.endswith((".zst", ".zstd")):
        try:
            import zstandard
        except ImportError as e:          # pragma: no cover - zstandard is a dependency
            raw.close()
            raise RuntimeError("writing .zst needs the zstandard package") from e
        w = zstandard.ZstdCompressor(level=3 if level is None else level).stream_writer(raw, closefd=False)
        return w, [w, raw]
    return raw, [raw]


def write_capture(path, n: int, level: int | None = None, **kw) -> int:
    """Write ``n`` lines of :func:`generate` (``**kw`` as there; ``mixed=True`` for
    :func:`generate_mixed`) to ``path``: gzip for ``.gz``, zstd for ``.zst``, plain otherwise;
    ``"-"`` is stdout and a binary file object is written to as is (plain, left open).
    Streams in ~1 MB batches; ``level`` overrides the compression level (gzip 6, zstd 3).
    The gzip header carries no name and no time, so files are byte-for-byte reproducible.
    Returns the number of uncompressed bytes written."""
    if kw.pop("mixed", False):
        kw["dialect"] = "mixed"
    lines = generate(n, **kw)                 # checks the arguments before a file is created
    out, closers = _open_sink(path, level)
    total = 0
    try:
        batch: list = []
        size = 0
        for line in lines:
            batch.append(line)
            size += len(line)
            if size >= 1 << 20:
                out.write(b"".join(batch))
                total += size
                batch.clear()
                size = 0
        if batch:
            out.write(b"".join(batch))
            total += size
        if not closers:
            out.flush()
    finally:
        for c in closers:
            c.close()
    return total


def _main_bench(n: int = 20000) -> None:     # pragma: no cover - manual speed check
    t0 = time.perf_counter()
    total = sum(len(x) for x in generate(n))
    dt = time.perf_counter() - t0
    print(f"{n / dt:,.0f} lines/s, {total / dt / 1e6:,.1f} MB/s, mean {total / n:,.0f} B/line")


if __name__ == "__main__":                    # pragma: no cover
    _main_bench(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
