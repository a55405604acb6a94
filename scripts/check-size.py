#!/usr/bin/env python3
"""Size limits of issue 21: no source file in agent/, controlplane/, cli/ over 800 lines and no
function over 80 (from its signature's line to its closing brace, lambdas counted in the
function that holds them). A brace-matching reader, not a compiler: comments, strings and
character literals are blanked first; a body is a `{` directly inside a namespace or class whose
head ends like a function's (`)`, `) const`, `override`, an initializer list...).

  scripts/check-size.py [--max-file N] [--max-function N] [dirs...]   exit 1 when over
"""
import argparse
import os
import re
import sys

HEAD_KEYWORDS = re.compile(r'\b(namespace|class|struct|union|enum)\b')
CONTROL = re.compile(r'^\s*(if|for|while|switch|catch|do|else)\b')


def blank(text):
    """Comments, strings and char literals become spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i) and (i == 0 or not (text[i-1].isalnum() or text[i-1] == '_')):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                out.append(c); i += 1; continue
            end = ')' + m.group(1) + '"'
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c in '"\'':
            if c == "'" and i > 0 and text[i-1].isalnum():  # digit separator 1'000
                out.append(' '); i += 1; continue
            j = i + 1
            while j < n and text[j] != c and text[j] != '\n':
                j += 2 if text[j] == '\\' else 1
            j = min(j + 1, n)
            out.append(' ' * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def no_directives(code):
    """Preprocessor lines (and their continuations) become blank lines."""
    out, cont = [], False
    for line in code.split('\n'):
        directive = cont or line.lstrip().startswith('#')
        cont = directive and line.rstrip().endswith('\\')
        out.append('' if directive else line)
    return '\n'.join(out)


def functions(text):
    """(name, first line, last line) of every function body directly in a namespace/class."""
    code = no_directives(blank(text))
    stack = []  # 'scope' (namespace/class/extern) or 'body' or 'other'
    found = []
    last_stmt_end = 0
    line_of = lambda pos: code.count('\n', 0, pos) + 1
    starts = []
    for i, c in enumerate(code):
        if c == '{':
            head = code[last_stmt_end:i]
            kind = 'other'
            if not stack or stack[-1] == 'scope':
                h = head.strip()
                hs = re.sub(r'\s+', ' ', h)
                if HEAD_KEYWORDS.search(hs) and not re.search(r'\)\s*(const)?\s*$', hs) and '=' not in hs.split('(')[0]:
                    kind = 'scope'
                elif hs.startswith('extern "') or hs == 'extern':
                    kind = 'scope'
                elif '(' in hs and not CONTROL.match(hs) and not hs.endswith('=') and not re.search(r'=\s*$', hs):
                    kind = 'body'
                    name = re.findall(r'([~\w:<>]+)\s*\(', hs)
                    first = line_of(last_stmt_end + (len(head) - len(head.lstrip())))
                    starts.append((len(stack), name[0] if name else '?', first))
            stack.append(kind)
            last_stmt_end = i + 1
        elif c == '}':
            kind = stack.pop() if stack else 'other'
            if kind == 'body' and starts and starts[-1][0] == len(stack):
                _, name, first = starts.pop()
                found.append((name, first, line_of(i)))
            last_stmt_end = i + 1
        elif c == ';':
            last_stmt_end = i + 1
        elif c == ':' and stack and stack[-1] == 'scope':
            # access specifiers (public:) end a head too
            prev = code[last_stmt_end:i].strip()
            if prev in ('public', 'private', 'protected'):
                last_stmt_end = i + 1
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--max-file', type=int, default=800)
    ap.add_argument('--max-function', type=int, default=80)
    ap.add_argument('dirs', nargs='*', default=['agent', 'controlplane', 'cli'])
    a = ap.parse_args()
    bad = 0
    for d in a.dirs:
        for root, _, files in os.walk(d):
            for f in sorted(files):
                if not f.endswith(('.cc', '.h', '.cpp')):
                    continue
                p = os.path.join(root, f)
                text = open(p, encoding='utf-8', errors='replace').read()
                lines = text.count('\n')
                if lines > a.max_file:
                    print(f'{p}: {lines} lines (limit {a.max_file})')
                    bad += 1
                for name, first, last in functions(text):
                    if last - first + 1 > a.max_function:
                        print(f'{p}:{first}: {name}: {last - first + 1} lines (limit {a.max_function})')
                        bad += 1
    if bad:
        print(f'{bad} over the limits', file=sys.stderr)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
