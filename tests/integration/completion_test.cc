// `agentctl completion bash|zsh|fish`, each script run by its own shell the way the shell
// runs it on Tab, against a real agentd: commands (PM2's names too), output formats, the
// units and modules of the agent the command line names (--home), and MODULE:KEY.
//
//   - bash: the script's function, given COMP_WORDS/COMP_CWORD as readline splits the line
//     (at ':' too, per COMP_WORDBREAKS);
//   - zsh: compinit and bashcompinit as a user's .zshrc loads them, the script sourced, then
//     bashcompinit's own _bash_complete; only compadd (compsys' builtin, which needs a live
//     completion widget) is replaced by what it does here: keep the words that start with
//     the word on the line;
//   - fish: `complete -C LINE`, fish's own way of asking what Tab would offer.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

constexpr char kManifest[] = R"({
  "name": "keyed",
  "version": "1.0.0",
  "config": { "limit": 3, "label": "x" },
  "apps": [{ "script": "main.py" }]
})";

constexpr char kZshDriver[] = R"ZSH(
autoload -U compinit && compinit -u -D
source <(agentctl completion zsh) || exit 3
compadd() {
  local a seen=0
  for a in "$@"; do
    if (( seen )); then [[ $a == ${PREFIX}* ]] && print -r -- $a
    elif [[ $a == - ]]; then seen=1; fi
  done
}
words=(${(z)LINE})
[[ $LINE == *' ' ]] && words+=('')
CURRENT=${#words}
PREFIX=${words[CURRENT]}
_bash_complete -F _agentctl || true  # 1: nothing matched
)ZSH";

class CompletionTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(Which(GetParam()).empty())
        << GetParam() << " is not installed: apt-get install " << GetParam();
    ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();
    for (const char* name : {"web-1", "worker"}) {
      CmdResult r = agent_.Ctl({"start", AgentHarness::ChildBinary(), "--name", name});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const std::string dir = agent_.Path("keyed");
    WriteTextFile(dir + "/package.json", kManifest);
    WriteTextFile(dir + "/main.py", "import time\ntime.sleep(1000)\n");
    CmdResult r = agent_.Ctl({"install", dir});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // What Tab offers after `line`, sorted. HERD_HOME points nowhere: names come from the
  // agent the line's --home names, as the user typed it.
  std::vector<std::string> Complete(const std::string& line) {
    const std::string shell = GetParam();
    std::vector<std::string> argv = {"/usr/bin/env",
                                     "PATH=" + AgentHarness::BinDir() + ":/usr/bin:/bin",
                                     "HERD_HOME=/nonexistent", "LINE=" + line};
    if (shell == "bash") {
      argv.insert(argv.end(), {"bash", "-c", absl::StrCat(
          "source <(agentctl completion bash) || exit 3\n"
          "COMP_LINE=\"$LINE\"; COMP_POINT=${#COMP_LINE}\n"
          // readline's split: blanks, and ':' as a word of its own (COMP_WORDBREAKS).
          "read -ra COMP_WORDS <<< \"${COMP_LINE//:/ : }\"\n",
          absl::EndsWith(line, " ") || absl::EndsWith(line, ":") ? "COMP_WORDS+=(\"\")\n" : "",
          "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
          "_agentctl; printf '%s\\n' \"${COMPREPLY[@]}\"\n")});
    } else if (shell == "zsh") {
      argv.insert(argv.end(), {"zsh", "-f", "-c", kZshDriver});
    } else {
      argv.insert(argv.end(), {"fish", "--no-config", "-c",
                               "agentctl completion fish | source; or exit 3\n"
                               "complete -C \"$LINE\""});
    }
    CmdResult r = herd::testing::Run(argv);
    EXPECT_EQ(r.exit_code, 0) << shell << ": " << r.err;
    std::vector<std::string> out;
    for (absl::string_view l : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      out.emplace_back(l.substr(0, l.find('\t')));  // fish: "word<TAB>description"
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  AgentHarness agent_;
};

TEST_P(CompletionTest, CompletesCommandsFormatsNamesAndKeys) {
  const std::string home = "agentctl --home " + agent_.home() + " ";
  EXPECT_THAT(Complete("agentctl sto"), ElementsAre("stop"));
  EXPECT_THAT(Complete("agentctl jl"), ElementsAre("jlist"));
  EXPECT_THAT(Complete("agentctl -o y"), ElementsAre("yaml"));
  EXPECT_THAT(Complete("agentctl completion "), ElementsAre("bash", "fish", "zsh"));
  EXPECT_THAT(Complete(home + "restart "), ElementsAre("keyed", "web-1", "worker"));
  EXPECT_THAT(Complete(home + "logs w"), ElementsAre("web-1", "worker"));
  EXPECT_THAT(Complete(home + "uninstall "), ElementsAre("keyed"));
  // Without --home: the (nonexistent) default agent has nothing to offer, and says nothing.
  EXPECT_THAT(Complete("agentctl restart "), ::testing::IsEmpty());
  // MODULE:KEY. bash completes the part after ':' (a word of its own there).
  const bool bash = GetParam() == "bash";
  EXPECT_THAT(Complete(home + "set ke"), ElementsAre("keyed:label", "keyed:limit"));
  EXPECT_THAT(Complete(home + "set keyed:li"),
              ElementsAreArray(std::vector<std::string>{bash ? "limit" : "keyed:limit"}));
}

INSTANTIATE_TEST_SUITE_P(Shells, CompletionTest, ::testing::Values("bash", "zsh", "fish"),
                         [](const auto& info) { return info.param; });

// Each script names the same commands; a shell without one is refused with the choices.
TEST(CompletionScriptTest, UnknownShellsAreRefused) {
  AgentHarness agent;
  CmdResult bad = agent.Ctl({"completion", "tcsh"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, ::testing::HasSubstr("tcsh not in {bash,zsh,fish}"));
}

}  // namespace
}  // namespace herd::testing
