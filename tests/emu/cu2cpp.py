#!/usr/bin/env python3
"""cu2cpp.py IN.ii OUT.cpp ROOT: turns a preprocessed CUDA translation unit into host C++ for the emulator.

The .cu file has been preprocessed by g++ with tests/emu/inc/emu_device.h force-included, so every macro is expanded
and adjacent string literals of asm templates stand side by side. Three constructs remain that C++ cannot take; they
are rewritten in the parts of the file that come from the project (line markers under ROOT), each on its own line so
that line numbers, and the #line markers, stay right:

  __shared__ T name[N]...;        ->  a reference into the block's shared-memory arena (emu::smem_static), allocated
                                      at the declaration's first execution in a launch, the same for every thread
  extern __shared__ T name[];     ->  T * const name = (T *) emu::smem_dynamic();
  kernel<<<g, b, smem, s>>>(args) ->  emu_launch("kernel", kernel, g, b, smem, s, args)
  asm [volatile] ("tmpl" : outs : ins : clobbers)
                                  ->  emu::run_asm("tmpl", {operands}, ...): the PTX is interpreted (emu_ptx.cpp)
"""
import re
import sys


def skip_string(s, i):
    """s[i] is a quote: index after the literal."""
    q = s[i]
    i += 1
    while s[i] != q:
        i += 2 if s[i] == '\\' else 1
    return i + 1


def match_close(s, i, open_ch, close_ch):
    """s[i] == open_ch: index of the matching close_ch (strings and char literals skipped)."""
    depth = 0
    while True:
        c = s[i]
        if c in '"\'':
            i = skip_string(s, i)
            continue
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i
        i += 1


def split_top(s, sep):
    """Splits s at sep outside (), [], {}, <> (templates) and string literals."""
    out, depth, cur, i = [], 0, [], 0
    while i < len(s):
        c = s[i]
        if c in '"\'':
            j = skip_string(s, i)
            cur.append(s[i:j])
            i = j
            continue
        if c in '([{<':
            depth += 1
        elif c in ')]}>':
            depth -= 1
        if c == sep and depth == 0:
            out.append(''.join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append(''.join(cur))
    return out


def one_line(s):
    return ' '.join(s.split())


ATTR = re.compile(r'__attribute__\s*\(\(\s*aligned\s*\(\s*(\d+)\s*\)\s*\)\)')
counter = [0]


def rewrite_shared(decl, is_extern):
    """decl: the text after __shared__ up to (not including) the ';'."""
    align = 0
    m = ATTR.search(decl)
    while m:
        align = max(align, int(m.group(1)))
        decl = decl[:m.start()] + decl[m.end():]
        m = ATTR.search(decl)
    decl = one_line(decl)
    if is_extern:
        m = re.match(r'^(.*?)\s*\b(\w+)\s*\[\s*\]$', decl)
        if not m:
            raise SystemExit('cu2cpp: cannot parse extern __shared__ declaration: ' + decl)
        ty, name = m.group(1), m.group(2)
        return '%s * const %s = (%s *) ::emu::smem_dynamic();' % (ty, name, ty)
    parts = [p.strip() for p in split_top(decl, ',')]
    first = parts[0]
    m = re.match(r'^(.*?)\b(\w+)\s*((?:\[[^\]]*\]\s*)*)$', first)
    if not m or not m.group(1).strip():
        raise SystemExit('cu2cpp: cannot parse __shared__ declaration: ' + decl)
    ty = m.group(1).strip()
    decls = [(m.group(2), m.group(3).strip())]
    for p in parts[1:]:
        m2 = re.match(r'^(\w+)\s*((?:\[[^\]]*\]\s*)*)$', p)
        if not m2:
            raise SystemExit('cu2cpp: cannot parse __shared__ declarator: ' + p)
        decls.append((m2.group(1), m2.group(2).strip()))
    out = []
    for name, dims in decls:
        counter[0] += 1
        t = 'emu_shared_t_%d' % counter[0]
        k = 'emu_shared_key_%d' % counter[0]
        al = 'alignof(%s)' % t if not align else '(alignof(%s) > %d ? alignof(%s) : %d)' % (t, align, t, align)
        out.append('typedef %s %s%s; static const char %s = 0; %s & %s = *(%s *) ::emu::smem_static(&%s, sizeof(%s), %s, "%s");'
                   % (ty, t, dims, k, t, name, t, k, t, al, name))
    return ' '.join(out)


def rewrite_launch(s, i):
    """s[i:] starts with '<<<'; returns (start, end, replacement) covering 'kernel<<<cfg>>>(args)'."""
    j = i - 1
    while s[j].isspace():
        j -= 1
    if s[j] == '>':  # template arguments: walk back to the matching '<'
        depth = 0
        while True:
            if s[j] == '>':
                depth += 1
            elif s[j] == '<':
                depth -= 1
                if depth == 0:
                    break
            j -= 1
        j -= 1
        while s[j].isspace():
            j -= 1
    while s[j].isalnum() or s[j] in '_:':
        j -= 1
    start = j + 1
    kernel = s[start:i].strip()
    cfg_end = s.index('>>>', i)
    cfg = [c.strip() for c in split_top(s[i + 3:cfg_end], ',')]
    if len(cfg) < 2 or len(cfg) > 4:
        raise SystemExit('cu2cpp: launch configuration of %s: %s' % (kernel, cfg))
    cfg += ['0', '0'][:4 - len(cfg)]
    k = cfg_end + 3
    while s[k].isspace():
        k += 1
    if s[k] != '(':
        raise SystemExit('cu2cpp: launch of %s without arguments' % kernel)
    close = match_close(s, k, '(', ')')
    args = s[k + 1:close].strip()
    text = 'emu_launch("%s", %s, %s%s)' % (one_line(kernel), kernel, ', '.join(cfg), (', ' + args) if args else '')
    return start, close + 1, text


def c_string_value(lits):
    """Concatenated value of adjacent C string literals, re-escaped as one literal."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', lits)
    return '"' + ''.join(parts) + '"'


def rewrite_asm(s, i, end_paren_open):
    """s[i:] starts with 'asm'; end_paren_open: index of its '('. Returns (end, replacement)."""
    close = match_close(s, end_paren_open, '(', ')')
    body = s[end_paren_open + 1:close]
    sections = split_top(body, ':')
    tmpl = c_string_value(sections[0])
    operands = []
    for sec_no, sec in enumerate(sections[1:3]):
        for op in split_top(sec, ','):
            op = op.strip()
            if not op:
                continue
            m = re.match(r'^"([=+&]*)(\w)"\s*\((.*)\)$', op, re.S)
            if not m:
                raise SystemExit('cu2cpp: asm operand: ' + op)
            mods, kind, expr = m.group(1), m.group(2), one_line(m.group(3))
            if sec_no == 0:
                operands.append("::emu::asm_out('%s', %s)" % (kind, expr))
            else:
                operands.append("::emu::asm_in('%s', %s)" % (kind, expr))
    end = close + 1
    arr = '{ %s }' % ', '.join(operands) if operands else '{ ::emu::asm_arg{} }'
    text = '{ ::emu::asm_arg emu_asm_args_[] = %s; ::emu::run_asm(%s, emu_asm_args_, %d, __FILE__, __LINE__); }' % (
        arr, tmpl, len(operands))
    return end, text


TOKEN = re.compile(r'\bextern\s+__shared__\b|\b__shared__\b|<<<|\basm\b(\s*(?:volatile|__volatile__))?\s*\(')


def transform_region(s):
    out, pos = [], 0
    while True:
        m = TOKEN.search(s, pos)
        if not m:
            out.append(s[pos:])
            return ''.join(out)
        tok = m.group(0)
        if tok.startswith('extern') or tok == '__shared__':
            semi = s.index(';', m.end())
            newlines = s.count('\n', m.start(), semi)
            out.append(s[pos:m.start()])
            out.append(rewrite_shared(s[m.end():semi], tok.startswith('extern')) + '\n' * newlines)
            pos = semi + 1
        elif tok == '<<<':
            start, end, text = rewrite_launch(s, m.start())
            # the kernel expression may already be in `out` (it precedes '<<<'): cut it back
            done = ''.join(out) + s[pos:start]
            out = [done, text + '\n' * s.count('\n', start, end)]
            pos = end
        else:
            end, text = rewrite_asm(s, m.start(), m.end() - 1)
            out.append(s[pos:m.start()])
            out.append(text + '\n' * s.count('\n', m.start(), end))
            pos = end


def main():
    src, dst, root = sys.argv[1], sys.argv[2], sys.argv[3].rstrip('/') + '/'
    text = open(src).read()
    # regions by line marker: '# <line> "<file>" <flags>'; project files are relative paths or under ROOT
    marker = re.compile(r'^# \d+ "([^"]*)"[^\n]*$', re.M)
    out, pos, project = [], 0, False
    for m in marker.finditer(text):
        chunk = text[pos:m.start()]
        out.append(transform_region(chunk) if project else chunk)
        out.append(m.group(0))
        f = m.group(1)
        project = not f.startswith('<') and not f.startswith('/usr/') and (not f.startswith('/') or f.startswith(root)) \
            and 'tests/emu/inc/' not in f
        pos = m.end()
    chunk = text[pos:]
    out.append(transform_region(chunk) if project else chunk)
    open(dst, 'w').write(''.join(out))


main()
